"""``manage.py gql_observer_token USERNAME``: print a signed token for a user."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gql_observer.core.auth import issue_token
from gql_observer.core.conf import get_settings


class Command(BaseCommand):
    help = (
        "Print a token for USERNAME to send in graphql-transport-ws connection_init "
        '({"token": ...}) or as "Authorization: Bearer ..." over HTTP.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(options["username"])
        except user_model.DoesNotExist:
            raise CommandError(f"No user named {options['username']!r}.") from None
        if not user.is_active:
            raise CommandError(f"{options['username']!r} is not active.")
        self.stdout.write(issue_token(user))
        self.stderr.write(f"valid for {get_settings().token_max_age} s")
