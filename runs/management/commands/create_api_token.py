"""Make the API token of a user and print its key, once (for executors and scripts)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from runs.access.models import ApiToken


class Command(BaseCommand):
    help = (
        "Make the API token of USERNAME and print its key. Only a hash is stored, so the key "
        "is printed this once; --rotate replaces an existing token. Programs send it as "
        "'Authorization: Token <key>'; what they may do comes from the user's permissions."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--rotate",
            action="store_true",
            help="replace the existing token (the old one stops working at once)",
        )

    def handle(self, *args, username, rotate, **options):
        users = get_user_model()
        try:
            user = users.objects.get(**{users.USERNAME_FIELD: username})
        except users.DoesNotExist:
            raise CommandError(
                f"no user {username!r}: create one first (manage.py createsuperuser, or the admin)"
            ) from None
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive: its token would be refused")
        with transaction.atomic():
            existing = ApiToken.objects.select_for_update().filter(user=user).first()
            if existing is not None and not rotate:
                raise CommandError(
                    f"user {username!r} has a token already ({existing.prefix}…); only its "
                    "hash is kept, so it cannot be shown again: --rotate replaces it"
                )
            ApiToken.objects.filter(user=user).delete()
            token = ApiToken.objects.create(user=user)
        self.stdout.write(token.key)
