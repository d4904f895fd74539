"""Make sure an admin login exists and say what it is (used by `make run`)."""

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the superuser 'admin' when missing. The password comes from "
        "DJANGO_SUPERUSER_PASSWORD, or is generated and kept in var/admin_password."
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
        if user is None:
            if not password:
                password = secrets.token_urlsafe(12)
                settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
                password_file.write_text(password + "\n")
                password_file.chmod(0o600)
            users.objects.create_superuser(username=username, email="", password=password)
            self.stdout.write(f"Created the admin user {username!r}.")
        elif password:
            # An explicit password is the operator's wish: apply it.
            user.set_password(password)
            user.save(update_fields=["password"])
        elif password_file.exists():
            password = password_file.read_text().strip()
        bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
        self.stdout.write(
            self.style.SUCCESS(f"Dashboard: http://{bind}/  (admin: http://{bind}/admin/)")
        )
        if password:
            self.stdout.write(
                self.style.SUCCESS(f"Log in as {username!r} with password {password!r}")
            )
        else:
            self.stdout.write(f"Log in as {username!r} with the password you set earlier.")
