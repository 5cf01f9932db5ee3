"""GraphiQL's assets without a CDN: which files strawberry's GraphiQL page loads
(:func:`page_assets`), and an HTTP app serving a directory of them from the
GraphQL path's own origin (``GRAPHIQL_ASSETS_DIR``; the management command
``gql_observer_graphiql_assets`` fills it from the npm registry).

The page loads each asset with ``crossorigin`` and ``integrity``: from the same
origin no CORS header is needed, and the browser still checks every file
against the hash the page names.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from channels.generic.http import AsyncHttpConsumer
from strawberry.http.ides import get_graphql_ide_html

__all__ = [
    "ASSETS_SEGMENT",
    "CDN",
    "Asset",
    "GraphiQLAssetsConsumer",
    "missing_assets",
    "page_assets",
    "sri",
]

#: Where strawberry's GraphiQL page loads its assets from.
CDN: Final = "https://unpkg.com"
#: The assets are served under ``<GraphQL path>/<ASSETS_SEGMENT>/``.
ASSETS_SEGMENT: Final = "graphiql"

_TAG: Final = re.compile(r"<(?:script|link)\b[^>]*>", re.S)
_URL: Final = re.compile(
    rf'(?:src|href)="{re.escape(CDN)}/(?P<name>(?:@[^/"@]+/)?[^/"@]+)@(?P<version>[^/"]+)/(?P<file>[^"]+)"'
)
_INTEGRITY: Final = re.compile(r'integrity="(?P<integrity>[^"]+)"')
_TYPES: Final = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class Asset:
    """One file GraphiQL's page loads: npm package, exact version, file in the
    package, and the page's subresource-integrity hash of it."""

    name: str
    version: str
    file: str
    integrity: str

    @property
    def path(self) -> str:
        """Its path under the assets' base URL (and directory): ``name@version/file``."""
        return f"{self.name}@{self.version}/{self.file}"


def page_assets(page: str | None = None) -> list[Asset]:
    """The assets ``page`` (strawberry's GraphiQL page) loads from the CDN."""
    html = get_graphql_ide_html("graphiql") if page is None else page
    found = []
    for tag in _TAG.findall(html):
        url, integrity = _URL.search(tag), _INTEGRITY.search(tag)
        if url is not None:
            found.append(
                Asset(
                    url["name"],
                    url["version"],
                    url["file"],
                    integrity["integrity"] if integrity else "",
                )
            )
    return found


def sri(data: bytes, integrity: str) -> bool:
    """Whether ``data`` matches the subresource-integrity value ``integrity``
    (``sha384-…``; any one of several space-separated hashes)."""
    for option in integrity.split():
        algorithm, _, expected = option.partition("-")
        if algorithm in {"sha256", "sha384", "sha512"}:
            digest = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
            if digest == expected:
                return True
    return False


def missing_assets(directory: Path) -> list[str]:
    """The assets of the page that ``directory`` lacks, or holds with other bytes."""
    missing = []
    for asset in page_assets():
        file = directory / asset.path
        if not file.is_file() or (asset.integrity and not sri(file.read_bytes(), asset.integrity)):
            missing.append(asset.path)
    return missing


class GraphiQLAssetsConsumer(AsyncHttpConsumer):  # type: ignore[misc]
    """GET (or HEAD) one file of the assets directory; 404 for anything else in
    it or outside it (only the files the page names are served)."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self.served = {asset.path for asset in page_assets()}

    async def handle(self, body: bytes) -> None:
        method = self.scope.get("method", "GET")
        asset = self.scope["url_route"]["kwargs"].get("asset", "")
        if method not in {"GET", "HEAD"}:
            await self.send_response(405, b"", headers=[(b"Allow", b"GET, HEAD")])
            return
        file = self.directory / asset
        if asset not in self.served or not file.is_file():
            await self.send_response(404, b"Not found", headers=[(b"Content-Type", b"text/plain")])
            return
        data = await asyncio.to_thread(file.read_bytes)  # up to 1 MB: off the event loop
        kind = _TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0] or "text/plain"
        headers = [
            (b"Content-Type", kind.encode()),
            # Exact versions: a name never changes its bytes.
            (b"Cache-Control", b"public, max-age=31536000, immutable"),
            (b"X-Content-Type-Options", b"nosniff"),
        ]
        await self.send_response(200, b"" if method == "HEAD" else data, headers=headers)
