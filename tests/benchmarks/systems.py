"""The systems the fan-out benchmark compares, each one adapter: how to prepare, serve, subscribe
and trigger a save. The orchestrator (fanout.py) uses the server half, the load workers
(loadgen.py) the client half. Adding a system = adding one ``System`` here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH_VENV = REPO / ".venv-bench"
MAIN_VENV = REPO / ".venv"


def bench_python() -> str:
    candidate = BENCH_VENV / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def main_python() -> str:
    candidate = MAIN_VENV / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


#: W1same, the reference: every subscriber sends this very document, ``requestId: 1`` inline.
GQL_SUBSCRIPTION_SAME = (
    'subscription { user(pk: "%(pk)s", requestId: 1) '
    "{ action responseStatus requestId data { id username email } } }"
)

#: What real clients send (graphql-ws's and Apollo's examples): one named document, the same
#: text for every subscriber, its arguments in ``variables``; each subscriber's ``requestId``
#: is its own (a millisecond timestamp, ``Date.now()``, too big for a GraphQL Int).
GQL_SUBSCRIPTION = (
    # JSON!, not JSON: P2's recipe declares requestId: JSON! (P0's nullable argument takes both)
    "subscription OnUser($pk: ID!, $requestId: JSON!) "
    "{ %(field)s(pk: $pk, requestId: $requestId) { %(selection)s } }"
)

#: W2's ten selections of the envelope (W1's is the first): documents that differ in the
#: fields they select and their aliases. Each keeps ``responseStatus`` and ``requestId`` (the
#: load worker checks the 201 and the subscriber's own requestId, aliased or not) and the
#: username (it carries the save's marker), under an alias or not.
SELECTIONS = (
    "action responseStatus requestId data { id username email }",
    "action responseStatus requestId data { id username }",
    "action responseStatus requestId data { uid: id name: username }",
    "responseStatus requestId data { username email }",
    "action responseStatus requestId data { id name: username mail: email }",
    "action errors responseStatus requestId data { id username email }",
    "requestId responseStatus action data { email username id }",
    "kind: action status: responseStatus rid: requestId data { id username }",
    "action responseStatus requestId data { username }",
    "action responseStatus requestId errors data { key: id login: username email }",
)


def gql_document(field: str = "user", selection: int = 0) -> str:
    """The subscription document of ``field`` with W2's selection number ``selection``."""
    return GQL_SUBSCRIPTION % {"field": field, "selection": SELECTIONS[selection % len(SELECTIONS)]}


@dataclass(frozen=True)
class System:
    key: str
    label: str
    # client half
    ws_path: str
    client: str  # "floor" | "dcrf" | "gql": how to subscribe and recognise the ack
    trigger: str  # "get": GET /bench/save/?pk=&marker= ; "mutation": POST updateUser to /graphql/
    # where logged-in viewers (W1v, W1p, W1x) connect, when not ws_path
    ws_auth_path: str | None = None
    # server half
    python: str = ""
    module_args: tuple[str, ...] = ()  # after "python"; "{port}" is replaced
    django_settings: str | None = None  # for the prepare step (None = nothing to prepare)
    uses_database: bool = True
    env_style: str = "bench"  # "bench": BENCH_* variables; "demo": DATABASE_URL / REDIS_URL
    extra_env: dict[str, str] = field(default_factory=dict)
    # W4's writer process (writer.py): modules it imports after Django is ready, so that the
    # same save handlers are connected as in the server (P0's connect when Django is ready)
    writer_imports: tuple[str, ...] = ()
    # server processes behind one channel layer; subscribers alternate between them, saves go
    # to the first (only on a layer that crosses processes)
    processes: int = 1
    # uvicorn's --ws for this system; None: the run's --uvicorn-ws
    uvicorn_ws: str | None = None

    def server_cmd(self, port: int) -> list[str]:
        return [self.python, *(a.replace("{port}", str(port)) for a in self.module_args)]

    def env(self, database_url: str | None, redis_url: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "VIRTUAL_ENV"))}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env["PYTHONPATH"] = str(REPO)
        env["PYTHONUNBUFFERED"] = "1"
        if self.env_style == "demo":
            if database_url:
                env["DATABASE_URL"] = database_url
            if redis_url:
                env["REDIS_URL"] = redis_url
        else:
            env["BENCH_SYSTEM"] = self.key
            if database_url:
                env["BENCH_DATABASE_URL"] = database_url
            if redis_url:
                env["BENCH_REDIS_URL"] = redis_url
        if self.django_settings:
            env["DJANGO_SETTINGS_MODULE"] = self.django_settings
        env.update(self.extra_env)
        return env

    def unavailable(self) -> str | None:
        """Why this system cannot run here, or None."""
        if self.key == "P0":
            missing = [p for p in ("gql_observer", "schema_examples") if not (REPO / p).is_dir()]
            if missing:
                return f"{', '.join(missing)} not in {REPO} yet"
            if not (REPO / "schema_examples" / "__main__.py").exists():
                return "schema_examples/__main__.py (the serve command) not written yet"
        if not Path(self.python).exists():
            return f"interpreter {self.python} missing (run --setup)"
        return None


#: gql_observer's websocket protocol for uvicorn (gql_observer.uvicorn), as its docs deploy it.
LEAN_WS = "gql_observer.uvicorn:WebSocketProtocol"

UVICORN = (
    "-m",
    "uvicorn",
    "--host",
    "127.0.0.1",
    "--port",
    "{port}",
    "--log-level",
    "warning",
    "--no-access-log",
    "--lifespan",
    "off",
)

SYSTEMS: dict[str, System] = {
    "F": System(
        key="F",
        label="F floor (bare websockets)",
        ws_path="/",
        client="floor",
        trigger="get",
        python=bench_python(),
        module_args=("-m", "tests.benchmarks.floor_server", "--port", "{port}"),
        uses_database=False,
    ),
    "U": System(
        key="U",
        label="U ASGI floor (bare ASGI app, uvicorn)",
        ws_path="/graphql/",
        client="gql",
        trigger="get",
        python=main_python(),
        module_args=(*UVICORN, "tests.benchmarks.asgi_floor:application"),
        uses_database=False,
    ),
    # the live-lists floor (lists_fanout.py's L1, L2): U's uvicorn command line on P0's
    # websocket protocol, Django's ORM on the peers' settings and database for the
    # creates, nothing else
    "LU": System(
        key="LU",
        label="LU live-lists floor (bare ASGI app + Django ORM creates, uvicorn)",
        ws_path="/graphql/",
        client="gql",
        trigger="get",
        python=main_python(),
        module_args=(*UVICORN, "tests.benchmarks.lists_floor:application"),
        django_settings="tests.benchmarks.peers.settings",
        # P0's websocket protocol, whose direct frame write LU uses as P0 does: the
        # cheapest write there is here, so that no system writes its frames for less
        uvicorn_ws=LEAN_WS,
    ),
    "P0": System(
        key="P0",
        label="P0 gql_observer (uvicorn, --ws gql_observer.uvicorn:WebSocketProtocol)",
        ws_path="/graphql/",
        client="gql",
        trigger="get",
        python=main_python(),
        module_args=(*UVICORN, "tests.benchmarks.peers.p0_asgi:application"),
        django_settings="tests.benchmarks.peers.p0_settings",
        uvicorn_ws=LEAN_WS,
    ),
    "P1": System(
        key="P1",
        label="P1 DCRF 1.3 ObserverModelInstanceMixin",
        ws_path="/ws/",
        client="dcrf",
        # the same consumer with permission_classes = (IsAuthenticated,), as DCRF's docs show
        ws_auth_path="/ws/auth/",
        trigger="get",
        python=bench_python(),
        module_args=(*UVICORN, "tests.benchmarks.peers.p1_asgi:application"),
        django_settings="tests.benchmarks.peers.settings",
        writer_imports=("tests.benchmarks.peers.p1_asgi",),
    ),
    "P2": System(
        key="P2",
        label="P2 strawberry channels recipe",
        ws_path="/graphql/",
        client="gql",
        trigger="get",
        python=bench_python(),
        module_args=(*UVICORN, "tests.benchmarks.peers.p2_asgi:application"),
        django_settings="tests.benchmarks.peers.settings",
        writer_imports=("tests.benchmarks.peers.p2_asgi",),
    ),
}
SYSTEMS["P0l"] = replace(
    SYSTEMS["P0"],
    key="P0l",
    label="P0 with DELIVER_IN_PROCESS off: every change through the channel layer",
    extra_env={"BENCH_DELIVER_IN_PROCESS": "0"},
)
SYSTEMS["P0s"] = replace(
    SYSTEMS["P0"],
    key="P0s",
    label="P0s gql_observer on uvicorn's own websocket protocol (--uvicorn-ws)",
    uvicorn_ws=None,
)
SYSTEMS["Ul"] = replace(
    SYSTEMS["U"],
    key="Ul",
    label="U on gql_observer.uvicorn's websocket protocol, as P0",
    uvicorn_ws=LEAN_WS,
)
# LU plus the read after commit that gql_observer's contract requires (one per batch of pks):
# the floor of a server that sends committed state
SYSTEMS["LUr"] = replace(
    SYSTEMS["LU"],
    key="LUr",
    label="LUr live-lists floor with the read after commit (LU + one read per batch of rows)",
    extra_env={"BENCH_LIST_READ": "1"},
)
SYSTEMS["P0x2"] = replace(
    SYSTEMS["P0"],
    key="P0x2",
    label="P0 gql_observer, two server processes behind one Redis",
    processes=2,
)
ORDER = ("F", "U", "Ul", "LU", "LUr", "P0", "P0s", "P0l", "P0x2", "P1", "P2")
#: What runs without --systems: P0x2 only when asked (it doubles P0's share of the machine),
#: P0s, P0l and Ul too. LU and LUr are the live-lists benchmark's (lists_fanout.py).
DEFAULT_SYSTEMS = ("F", "U", "P0", "P1", "P2")
