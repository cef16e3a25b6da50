"""WebSocket proxying (placeholder until the WebSocket work lands).

Refuses every WebSocket handshake with 501 so that clients get an HTTP
answer, never a hang.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from pyngx.proxy.http import ProxyPlan
from pyngx.request import Request

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def proxy_websocket(
    req: Request,
    plan: ProxyPlan,
    session: aiohttp.ClientSession,
    scope: dict[str, Any],
    receive: Receive,
    send: Send,
    quoted: bool,
    log: Any,
) -> None:
    """Refuse the handshake with 501 Not Implemented."""
    req.status = 501
    await send({"type": "websocket.http.response.start", "status": 501, "headers": [(b"content-length", b"0")]})
    await send({"type": "websocket.http.response.body", "body": b"", "more_body": False})
