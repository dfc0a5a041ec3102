"""The web dashboard at `/dashboard/`: static files that read and act through the HTTP API only.

The server side is only this: the page (for `/dashboard/` and every deep link under it, since the
page routes itself) and its scripts and styles, shipped in the package (`static/`). The assets hold
no data, so they are served without the API token; every request the page makes for data goes to
the documented HTTP API and carries the token the user signed in with.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

PREFIX = "/dashboard"
# The templates of the dashboard's routes (all GET), for tables of routes such as an access policy's.
PAGE_ROUTE = PREFIX + "/"
DEEP_LINK_ROUTE = PREFIX + "/instances/{rest:.+}"
STATIC_ROUTE = PREFIX + "/static/{file}"
ROUTE_TEMPLATES = (PREFIX, PAGE_ROUTE, PREFIX + "/instances/{rest}", STATIC_ROUTE)
_CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# The page pins what the browser may do: its own scripts and styles and requests to this server only.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class _Asset:
    body: bytes
    content_type: str
    etag: str


def _load_assets(component_name: str) -> dict[str, _Asset]:
    folder = resources.files(__package__).joinpath("static")
    assets: dict[str, _Asset] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if not entry.is_file() or suffix not in _CONTENT_TYPES:
            continue
        body = entry.read_bytes()
        if entry.name == "index.html":
            # The page calls the API under the component name this server accepts first.
            body = body.replace(b"{{component}}", html.escape(component_name).encode())
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[entry.name] = _Asset(body, _CONTENT_TYPES[suffix], etag)
    return assets


def dashboard_routes(component_name: str) -> list[web.RouteDef]:
    """The routes of the dashboard, for the HTTP API's application."""
    assets = _load_assets(component_name)

    def respond(request: web.Request, asset: _Asset) -> web.Response:
        # Revalidated on every load (no-cache), so a new version of the package shows at once.
        headers = {"ETag": asset.etag, "Cache-Control": "no-cache", **_SECURITY_HEADERS}
        if asset.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=asset.body, content_type=asset.content_type, headers=headers)

    async def page(request: web.Request) -> web.Response:
        return respond(request, assets["index.html"])

    async def static(request: web.Request) -> web.Response:
        asset = assets.get(request.match_info["file"])
        if asset is None:
            raise web.HTTPNotFound(text="no such file of the dashboard")
        return respond(request, asset)

    async def to_page(request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect(PREFIX + "/")

    return [
        web.get(PREFIX, to_page),
        web.get(PAGE_ROUTE, page),
        web.get(DEEP_LINK_ROUTE, page),
        web.get(STATIC_ROUTE, static),
    ]


__all__ = ["PREFIX", "ROUTE_TEMPLATES", "dashboard_routes"]
