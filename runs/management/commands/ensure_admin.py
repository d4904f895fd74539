"""Make sure an admin login exists and say what it is (used by `make run`)."""

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the superuser 'admin' when missing. The password comes from "
        "DJANGO_SUPERUSER_PASSWORD, or is generated, kept in SKILLAUDIT_DATA_DIR/admin_password "
        "(0600) and printed once."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--username", default=os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        )

    def handle(self, *args, username, **options):
        users = get_user_model()
        password_file = settings.DATA_DIR / "admin_password"
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        user = users.objects.filter(username=username).first()
        generated = False
        if user is None:
            if not password:
                password, generated = secrets.token_urlsafe(12), True
                settings.DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
                # 0600 from the first byte (write_text then chmod would leave a window).
                fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(password + "\n")
            users.objects.create_superuser(username=username, email="", password=password)
            self.stdout.write(f"Created the admin user {username!r}.")
        elif password:
            # An explicit password is the operator's wish: apply it.
            user.set_password(password)
            user.save(update_fields=["password"])
        bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
        self.stdout.write(
            self.style.SUCCESS(f"Dashboard: http://{bind}/  (admin: http://{bind}/admin/)")
        )
        # The password is printed once, when it is made; every later run (each `make run`)
        # says where it is instead of writing it into terminals and logs again.
        if generated:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Log in as {username!r} with password {password!r} (kept in {password_file})"
                )
            )
        elif password:
            self.stdout.write(f"Log in as {username!r} with DJANGO_SUPERUSER_PASSWORD.")
        elif password_file.exists():
            self.stdout.write(f"Log in as {username!r}: the password is in {password_file}.")
        else:
            self.stdout.write(f"Log in as {username!r} with the password you set earlier.")
