"""ASGI pieces of the read-only service: HEAD answered as GET without a body, other methods
refused, and the web map's static folder served only when it is bundled."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOWED = ("GET", "HEAD", "OPTIONS")  # OPTIONS: CORS preflight, answered by the CORS layer


async def send_json(send: Send, status: int, doc: dict, headers: list | None = None) -> None:
    """Send a whole JSON response."""
    body = json.dumps(doc).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": raw + (headers or [])})
    await send({"type": "http.response.body", "body": body})


class ReadOnly:
    """GET and HEAD only: HEAD runs the GET route and drops the body; any other method
    (OPTIONS aside, for CORS preflight) is a 405."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method not in ALLOWED:
            allow = [(b"allow", b"GET, HEAD")]
            await send_json(send, 405, {"detail": "the service is read-only: GET or HEAD"}, allow)
            return
        if method != "HEAD":
            await self.app(scope, receive, send)
            return

        async def no_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        scope["method"] = "GET"  # in place: outer layers (metrics) see the route that answered
        await self.app(scope, receive, no_body)


class BundledStatic(StaticFiles):
    """The web map's files; a JSON 503 while the folder is not bundled (never a 500)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory, check_dir=False)
        self.folder = Path(directory)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.folder.is_dir():
            await send_json(send, 503, {"detail": "the web map is not bundled with this install"})
            return
        await super().__call__(scope, receive, send)
