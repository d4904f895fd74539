"""Print the API token of a user, creating it when missing (for executors and scripts)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = (
        "Print the API token of USERNAME (created when missing). Programs send it as "
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
            if rotate:
                Token.objects.filter(user=user).delete()
            token, _created = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
