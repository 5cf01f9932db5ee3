"""``manage.py gql_observer_serve`` refuses bad options before it opens a port."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command


def test_a_negative_ping_interval_is_refused() -> None:
    with pytest.raises(CommandError, match="ping-interval"):
        call_command("gql_observer_serve", "--port", "0", "--ping-interval", "-1")
