"""``manage.py gql_observer_graphiql_assets [--dir DIR]``: fetch the files
GraphiQL's page loads, at the exact versions it names, from the npm registry into
a directory that ``GQL_OBSERVER["GRAPHIQL_ASSETS_DIR"]`` then serves from your own
server (GraphiQL with no internet)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final
from urllib.error import URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gql_observer.transport.graphiql import Asset, page_assets, sri

#: The public npm registry (``--registry`` or ``npm_config_registry`` name another).
REGISTRY: Final = "https://registry.npmjs.org"
#: Under ``STATIC_ROOT`` when no ``--dir`` is given.
STATIC_SUBDIRECTORY: Final = "gql_observer/graphiql"
_TIMEOUT: Final = 60.0


def _get(url: str) -> bytes:
    request = Request(url, headers={"User-Agent": "gql_observer", "Accept": "*/*"})
    try:
        with urlopen(request, timeout=_TIMEOUT) as response:
            data: bytes = response.read()
    except (URLError, OSError) as error:
        raise CommandError(f"Could not fetch {url}: {error}") from None
    return data


def _tarball(registry: str, name: str, version: str) -> bytes:
    """The package's tarball, checked against the registry's ``dist.integrity``."""
    url = f"{registry.rstrip('/')}/{quote(name, safe='@')}/{quote(version)}"
    try:
        dist = json.loads(_get(url))["dist"]
        tarball, integrity = dist["tarball"], dist["integrity"]
    except (ValueError, KeyError, TypeError):
        raise CommandError(f"{url} is not npm package metadata with dist.integrity.") from None
    data = _get(tarball)
    if not sri(data, integrity):
        raise CommandError(f"{tarball} does not match its registry integrity {integrity}.")
    return data


def _member(data: bytes, file: str) -> bytes | None:
    """``file`` of the package in the tarball ``data`` (its files are under one
    top directory, ``package/`` for most)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            _, _, inside = member.name.partition("/")
            if inside == file and member.isfile():
                extracted = archive.extractfile(member)
                return extracted.read() if extracted is not None else None
    return None


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    draft.write_bytes(data)
    draft.replace(path)


def fetch(directory: Path, registry: str, assets: Iterable[Asset]) -> list[tuple[Asset, bool]]:
    """Put every one of ``assets`` in ``directory`` (``name@version/file``), each
    package's tarball fetched once and checked against the registry's integrity,
    each file against the page's; whether each was fetched (else: already there)."""
    done: list[tuple[Asset, bool]] = []
    tarballs: dict[tuple[str, str], bytes] = {}
    for asset in assets:
        target = directory / asset.path
        if target.is_file() and sri(target.read_bytes(), asset.integrity):
            done.append((asset, False))
            continue
        key = (asset.name, asset.version)
        if key not in tarballs:
            tarballs[key] = _tarball(registry, *key)
        data = _member(tarballs[key], asset.file)
        if data is None:
            raise CommandError(f"{asset.name}@{asset.version} has no file {asset.file}.")
        if asset.integrity and not sri(data, asset.integrity):
            raise CommandError(
                f"{asset.path} from the registry does not match the integrity GraphiQL's "
                f"page names ({asset.integrity})."
            )
        _write(target, data)
        done.append((asset, True))
    return done


class Command(BaseCommand):
    # It only fetches files: a configuration still being written must not stop it.
    requires_system_checks: list[str] = []
    help = (
        "Fetch GraphiQL's scripts and styles (the exact versions strawberry's GraphiQL "
        "page loads) from the npm registry into DIR (default: STATIC_ROOT/"
        f"{STATIC_SUBDIRECTORY}), checking each against the registry's and the page's "
        'integrity hashes. Then set GQL_OBSERVER["GRAPHIQL_ASSETS_DIR"] to DIR.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dir", help=f"default: STATIC_ROOT/{STATIC_SUBDIRECTORY}")
        parser.add_argument(
            "--registry",
            # npm's own variable, in the case npm sets it.
            default=os.environ.get("npm_config_registry")  # noqa: SIM112
            or os.environ.get("NPM_CONFIG_REGISTRY")
            or REGISTRY,
            help=f"npm registry (default: $npm_config_registry, else {REGISTRY})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["dir"]:
            directory = Path(options["dir"])
        elif static_root := getattr(settings, "STATIC_ROOT", None):
            directory = Path(static_root) / STATIC_SUBDIRECTORY
        else:
            raise CommandError("Name a directory with --dir, or set STATIC_ROOT.")
        assets = page_assets()
        if not assets:
            raise CommandError("strawberry's GraphiQL page names no assets to fetch.")
        for asset, fetched in fetch(directory, options["registry"], assets):
            self.stderr.write(f"{'fetched' if fetched else 'present'} {asset.path}")
        self.stdout.write(str(directory.resolve()))
        self.stderr.write(
            f'Serve them: GQL_OBSERVER = {{..., "GRAPHIQL_ASSETS_DIR": "{directory.resolve()}"}}'
        )
