from __future__ import annotations

from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "schema_examples.users"
    label = "example_users"
