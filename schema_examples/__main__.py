"""``python -m schema_examples serve [--host H] [--port P]`` runs the demo;
``python -m schema_examples <manage.py command>`` runs any Django command."""

from __future__ import annotations

import argparse
import os
import signal
import sys


def _seed() -> None:
    from django.contrib.auth.models import User

    if User.objects.exists():
        return
    for n in (1, 2, 3):
        user = User(pk=n, username=f"test {n}", email=f"{n}@example.com")
        user.set_password("demo")  # a demo: log in as "test 1" / "demo"
        user.save()


#: gql_observer's websocket protocol for uvicorn: uvicorn's own, keeping less per connection.
LEAN_WS = "gql_observer.uvicorn:WebSocketProtocol"


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m schema_examples serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--ws",
        default=LEAN_WS,
        help="uvicorn's websocket implementation (default: gql_observer's leaner "
        "subclass of websockets-sansio; 'auto' for uvicorn's own)",
    )
    args = parser.parse_args(argv)

    import django
    from django.core.management import call_command

    django.setup()
    from django.conf import settings

    if str(settings.DATABASES["default"]["NAME"]).startswith(str(settings.VAR)):
        settings.VAR.mkdir(exist_ok=True)
    call_command("migrate", interactive=False, verbosity=0)
    _seed()

    import uvicorn

    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal
    # with the handlers found before it started: make that a clean exit.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_cleanly)
    # The port opens only now, after migrations and seeding.
    uvicorn.run(
        "schema_examples.asgi:application",
        host=args.host,
        port=args.port,
        lifespan="on",
        ws=args.ws,
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "schema_examples.settings")
    if argv[:1] == ["serve"]:
        serve(argv[1:])
        return
    from django.core.management import execute_from_command_line

    execute_from_command_line(["python -m schema_examples", *argv])


if __name__ == "__main__":
    main()
