"""The read-only web UI, served by each node's API port under ``/ui``.

Three static files (cluster/web/): a page, its script and its style. The script reads
the same JSON endpoints as the CLI with the token the operator types in (kept in the
browser tab's sessionStorage, sent as ``X-Keyquorum-Token``), so the UI can show
nothing the token could not read through the API, and it has no control that writes.

Pages: the cluster as this node sees it (``/v1/sys/raft/status``), the seal, the
replication status, scopes with their roles and credentials, object counts by scope,
type and state (``/v1/sys/objects``), the audit devices and the latest records of
this node's file devices (``/v1/sys/audit-trail``).

Not shown yet: records sent to syslog or socket devices (they keep no copy to read
back) and Consul registration (the node keeps no status of it to show; it would
need cluster/consul.py to record its last outcome).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

# No inline script or style, no other origin: injected markup could not run.
_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "connect-src 'self'; img-src 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


def _read(name: str) -> bytes:
    return resources.files("keyquorum.cluster").joinpath("web", name).read_bytes()


def ui_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    # Read once: the files are part of the installed package and never change under it.
    content = {name: _read(name) for name in _FILES}

    def serve(name: str) -> Response:
        return Response(content[name], media_type=_FILES[name], headers=_HEADERS)

    @router.get("/")
    def root() -> RedirectResponse:
        return RedirectResponse("/ui")

    @router.get("/ui")
    def page() -> Response:
        return serve("index.html")

    @router.get("/ui/{name}")
    def asset(name: str) -> Response:
        if name not in _FILES or name == "index.html":
            return Response("not found", status_code=404, media_type="text/plain")
        return serve(name)

    return router
