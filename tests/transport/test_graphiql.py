"""GraphiQL with no internet: ``manage.py gql_observer_graphiql_assets`` fetches
the exact assets strawberry's GraphiQL page names from the npm registry (checked
against the registry's and the page's integrity hashes), and the library's own
HTTP app serves them from the GraphQL path's origin (``GRAPHIQL_ASSETS_DIR``).
The page in Chromium, with every other host blocked: tests/node/graphiql.test.mjs."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from channels.testing import HttpCommunicator
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import CommandError

from gql_observer.checks import MISSING_ASSETS
from gql_observer.transport.graphiql import page_assets, sri

HOST = (b"host", b"testserver")


def test_the_page_names_seven_assets_with_exact_versions_and_hashes() -> None:
    assets = page_assets()
    assert [a.path for a in assets] == [
        "react@18.2.0/umd/react.production.min.js",
        "react-dom@18.2.0/umd/react-dom.production.min.js",
        "js-cookie@3.0.5/dist/js.cookie.min.js",
        "graphiql@3.8.3/graphiql.min.css",
        "@graphiql/plugin-explorer@1.0.2/dist/style.css",
        "graphiql@3.8.3/graphiql.min.js",
        "@graphiql/plugin-explorer@1.0.2/dist/index.umd.js",
    ]
    assert all(a.integrity.startswith("sha384-") for a in assets)


def test_the_command_fetched_every_asset_the_page_names(graphiql_assets: Path) -> None:
    for asset in page_assets():
        assert sri((graphiql_assets / asset.path).read_bytes(), asset.integrity), asset.path


def test_a_second_run_fetches_nothing_that_is_already_there(graphiql_assets: Path) -> None:
    err = StringIO()
    call_command(
        "gql_observer_graphiql_assets", dir=str(graphiql_assets), stdout=StringIO(), stderr=err
    )
    assert [line.split()[0] for line in err.getvalue().splitlines()[:7]] == ["present"] * 7


def test_without_a_directory_or_static_root_the_command_says_what_to_do(settings: Any) -> None:
    settings.STATIC_ROOT = None
    with pytest.raises(CommandError, match=r"Name a directory with --dir, or set STATIC_ROOT\."):
        call_command("gql_observer_graphiql_assets", stdout=StringIO(), stderr=StringIO())


def test_the_default_directory_is_under_static_root(settings: Any, graphiql_assets: Path) -> None:
    # A copy of the fetched files under STATIC_ROOT: nothing to fetch again.
    root = graphiql_assets.parent / "static-root"
    target = root / "gql_observer" / "graphiql"
    for asset in page_assets():
        (target / asset.path).parent.mkdir(parents=True, exist_ok=True)
        (target / asset.path).write_bytes((graphiql_assets / asset.path).read_bytes())
    settings.STATIC_ROOT = str(root)
    out = StringIO()
    call_command("gql_observer_graphiql_assets", stdout=out, stderr=StringIO())
    assert out.getvalue().strip() == str(target.resolve())


class _Registry(BaseHTTPRequestHandler):
    """A registry whose tarball is not the one its metadata's integrity names."""

    files: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def tampering_registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    url = f"http://127.0.0.1:{server.server_port}"
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        data = b"alert('not react')"
        info = tarfile.TarInfo("package/umd/react.production.min.js")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tarball = archive.getvalue()
    honest = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    liar = "sha512-" + base64.b64encode(hashlib.sha512(b"other").digest()).decode()
    _Registry.files = {
        "/react/18.2.0": json.dumps(
            {"dist": {"tarball": f"{url}/react.tgz", "integrity": liar}}
        ).encode(),
        "/react-honest/18.2.0": json.dumps(
            {"dist": {"tarball": f"{url}/react.tgz", "integrity": honest}}
        ).encode(),
        "/react.tgz": tarball,
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()
    server.server_close()


def test_a_tarball_that_does_not_match_the_registry_integrity_is_refused(
    tampering_registry: str, tmp_path: Path
) -> None:
    from gql_observer.management.commands.gql_observer_graphiql_assets import fetch

    (react, *_) = page_assets()
    with pytest.raises(CommandError, match=r"react\.tgz does not match its registry integrity"):
        fetch(tmp_path, tampering_registry, [react])
    assert not any(tmp_path.iterdir())


def test_a_file_that_does_not_match_the_pages_integrity_is_refused(
    tampering_registry: str, tmp_path: Path
) -> None:
    from gql_observer.management.commands.gql_observer_graphiql_assets import fetch

    (react, *_) = page_assets()
    honest_name = type(react)("react-honest", react.version, react.file, react.integrity)
    with pytest.raises(CommandError, match="does not match the integrity GraphiQL's page names"):
        fetch(tmp_path, tampering_registry, [honest_name])
    assert not any(tmp_path.iterdir())


async def _get(app: Any, path: str, method: str = "GET") -> dict[str, Any]:
    communicator = HttpCommunicator(app, method, path, headers=[HOST, (b"accept", b"text/html")])
    response: dict[str, Any] = await communicator.get_response(timeout=10)
    return response


@pytest.fixture
def served(
    settings: Any, observer_settings: Callable[..., Any], graphiql_assets: Path
) -> Callable[[], Any]:
    settings.DEBUG = True
    observer_settings(GRAPHIQL_ASSETS_DIR=str(graphiql_assets))

    def build() -> Any:
        from gql_observer.asgi import application
        from schema_examples.asgi import django_application
        from schema_examples.schema import schema

        return application(schema, django_application=django_application)

    return build


@pytest.mark.django_db
async def test_graphiql_loads_its_assets_from_its_own_origin(served: Callable[[], Any]) -> None:
    app = served()
    page = await _get(app, "/graphql/")
    assert page["status"] == 200
    html = page["body"].decode()
    assert "unpkg.com" not in html and "https://" not in html.split("<body>")[0]
    for asset in page_assets():
        url = f"/graphql/graphiql/{asset.path}"
        assert f'"{url}"' in html, url
        response = await _get(app, url)
        assert response["status"] == 200, url
        assert sri(response["body"], asset.integrity), url
        kind = dict(response["headers"])[b"Content-Type"]
        assert kind.startswith(b"text/javascript" if url.endswith(".js") else b"text/css"), kind


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/graphql/graphiql/react@18.2.0/package.json",
        "/graphql/graphiql/../../settings.py",
        "/graphql/graphiql/%2e%2e/%2e%2e/etc/passwd",
        "/graphql/graphiql/react@18.2.0/umd/react.development.js",
    ],
)
async def test_nothing_but_the_pages_assets_is_served(served: Callable[[], Any], path: str) -> None:
    response = await _get(served(), path)
    assert response["status"] == 404, response


@pytest.mark.django_db
async def test_assets_are_read_only(served: Callable[[], Any]) -> None:
    response = await _get(served(), "/graphql/graphiql/graphiql@3.8.3/graphiql.min.css", "POST")
    assert response["status"] == 405


def test_a_directory_without_the_assets_is_a_warning(
    observer_settings: Callable[..., Any], tmp_path: Path
) -> None:
    observer_settings(GRAPHIQL_ASSETS_DIR=str(tmp_path))
    (found,) = [m for m in run_checks() if m.id == MISSING_ASSETS]
    assert "lacks react@18.2.0/umd/react.production.min.js" in found.msg
    assert found.hint == f"Run `python manage.py gql_observer_graphiql_assets --dir {tmp_path}`."


def test_a_directory_with_the_assets_passes_the_checks(
    observer_settings: Callable[..., Any], graphiql_assets: Path
) -> None:
    observer_settings(GRAPHIQL_ASSETS_DIR=str(graphiql_assets))
    assert [m for m in run_checks() if m.id == MISSING_ASSETS] == []
