"""End to end: writes Django sends no signal for, made in a ``manage.py shell``
process, reach subscribers of a demo server process over real Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.support.live import LiveSocket
from tests.support.servers import Servers, run_shell

pytestmark = pytest.mark.timeout(120)

USER = (
    "subscription ($pk: ID!) { user(pk: $pk, requestId: 1) "
    "{ action responseStatus data { id email groups { name } } } }"
)
NOTE = (
    "subscription ($pk: ID!) { note(pk: $pk, requestId: 1) "
    "{ action responseStatus data { id title } } }"
)


async def shell(env: dict[str, str], code: str) -> str:
    """Run ``code`` in a shell process of its own; what it printed."""
    return (await asyncio.to_thread(run_shell, env, code)).stdout


async def test_shell_writes_without_signals_reach_user_subscribers(
    redis_env: dict[str, str], servers: Servers
) -> None:
    server = servers.demo(redis_env)
    socket = await LiveSocket.connect(server.ws)
    try:
        op, first = await socket.subscribe(USER, {"pk": 1})
        assert first["user"]["action"] == "subscribe_instance"

        # Many-to-many, from the group's side.
        await shell(
            redis_env,
            "from django.contrib.auth.models import Group, User; "
            "Group.objects.create(name='from shell').user_set.add(User.objects.get(pk=1))",
        )
        update = (await socket.next(op))["user"]
        assert update["action"] == "update"
        assert update["data"]["groups"] == [{"name": "from shell"}]

        # Raw SQL, then notify.
        await shell(
            redis_env,
            "import gql_observer; from django.contrib.auth.models import User; "
            "from django.db import connection\n"
            "with connection.cursor() as cursor:\n"
            "    cursor.execute('UPDATE auth_user SET email = %s WHERE id = 1',\n"
            "                   ['raw@example.com'])\n"
            "gql_observer.notify(User, [1])",
        )
        update = (await socket.next(op))["user"]
        assert update["data"]["email"] == "raw@example.com"

        # Cleared from the user's side.
        await shell(
            redis_env,
            "from django.contrib.auth.models import User; User.objects.get(pk=1).groups.clear()",
        )
        assert (await socket.next(op))["user"]["data"]["groups"] == []
    finally:
        await socket.close()


async def test_a_shells_queryset_update_of_notes_reaches_note_subscribers(
    redis_env: dict[str, str], servers: Servers
) -> None:
    server = servers.demo(redis_env)
    # The shell may print more (Django's automatic imports): the last line is ours.
    made: dict[str, Any] = json.loads(
        (
            await shell(
                redis_env,
                "import json, gql_observer; from django.contrib.auth.models import User; "
                "from schema_examples.notes.models import Note; u = User.objects.get(pk=1); "
                "notes = [Note.objects.create(owner=u, title=str(n)) for n in range(2)]; "
                "print(json.dumps({'token': gql_observer.issue_token(u), "
                "'pks': [n.pk for n in notes]}))",
            )
        ).splitlines()[-1]
    )
    socket = await LiveSocket.connect(server.ws, made["token"])
    try:
        ops = {}
        for pk in made["pks"]:
            op, first = await socket.subscribe(NOTE, {"pk": pk})
            assert first["note"]["action"] == "subscribe_instance", first
            ops[op] = pk
        await shell(
            redis_env,
            "from schema_examples.notes.models import Note; "
            "Note.objects.filter(owner_id=1).update(title='bulk from shell')",
        )
        seen = {}
        for _ in ops:
            op, data = await socket.next_any()
            assert data["note"]["action"] == "update"
            seen[ops[op]] = data["note"]["data"]["title"]
        assert seen == dict.fromkeys(made["pks"], "bulk from shell")
    finally:
        await socket.close()
