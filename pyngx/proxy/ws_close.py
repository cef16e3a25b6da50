"""WebSocket close codes across the two hops of a relay.

Owns: the close codes pyngx sends or reads (RFC 6455 7.4), ``wire_code``
(which code a received close may be passed on with), and
``install_hypercorn_close_fix`` (so that Hypercorn reports the client's
close code and reason to the app; proxy/websocket.py installs it).

Input: codes received in close frames or disconnect events. Output: codes to send.
Must not: relay messages or decide when a relay ends (proxy/websocket.py).

Source: RFC 6455 (5.5.1 closing handshake, 7.4 status codes).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

__all__ = ["GOING_AWAY", "INTERNAL_ERROR", "NO_STATUS", "TOO_BIG", "install_hypercorn_close_fix",
           "wire_code"]

# RFC 6455 7.4: codes an endpoint may put in a close frame.
GOING_AWAY = 1001
TOO_BIG = 1009
INTERNAL_ERROR = 1011
NO_STATUS = 1005


def wire_code(code: int | None, fallback: int) -> int:
    """The close code to send on, for a code received.

    Args:
        code: the code received, or None.
        fallback: used when ``code`` may not be sent in a close frame
            (1004-1006, 1015, 0, >= 5000).

    Returns:
        ``code`` itself when it may be sent, 1000 for 1005 ("no status"),
        else ``fallback``.

    Source: RFC 6455 7.4.1 and 7.4.2 (reserved and unsendable codes).
    """
    if code is None:
        return fallback
    if 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999:
        return code
    return 1000 if code == NO_STATUS else fallback


def install_hypercorn_close_fix() -> bool:
    """Make Hypercorn tell the app the close code and reason the client sent.

    Hypercorn (0.18) answers a client's close frame itself and then sends the
    app ``websocket.disconnect`` with code 1006, so the code and reason are
    lost before they could be relayed upstream. This wraps two ``WSStream``
    methods: the close answer Hypercorn echoes to the client (which carries
    the client's code and reason, RFC 6455 5.5.1) is remembered, and the
    disconnect event then carries it (ASGI: ``code`` and ``reason``).
    Nothing else changes; without a close frame the code stays 1006.

    Returns:
        True when installed now or before; False when this Hypercorn does
        not have the expected internals (then the upstream sees 1001 for
        every client close).
    """
    try:
        from hypercorn.protocol.events import StreamClosed
        from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
        from wsproto.connection import ConnectionState
        from wsproto.events import CloseConnection
    except ImportError:  # pragma: no cover - other Hypercorn layouts
        return False
    if getattr(WSStream, "_pyngx_close_fix", False):
        return True
    send_event = getattr(WSStream, "_send_wsproto_event", None)
    handle = getattr(WSStream, "handle", None)
    if send_event is None or handle is None:  # pragma: no cover
        return False

    # Plain functions that hand back the original coroutine (or another):
    # every relayed message passes here, and an async wrapper would add a
    # coroutine per message.
    def _send_wsproto_event(self: Any, event: Any) -> Awaitable[None]:
        if isinstance(event, CloseConnection) and self.connection.state is ConnectionState.REMOTE_CLOSING:
            self._pyngx_peer_close = (event.code, event.reason or "")
        return send_event(self, event)  # type: ignore[no-any-return]

    async def _disconnect(self: Any, code: int, reason: str) -> None:
        self.closed = True
        await self.app_put({"type": "websocket.disconnect", "code": code, "reason": reason})

    def _handle(self: Any, event: Any) -> Awaitable[None]:
        peer = getattr(self, "_pyngx_peer_close", None)
        if (
            peer is not None
            and isinstance(event, StreamClosed)
            and not self.closed
            and self.app_put is not None
            and self.state is ASGIWebsocketState.CONNECTED
        ):
            return _disconnect(self, peer[0], peer[1])
        return handle(self, event)  # type: ignore[no-any-return]

    setattr(WSStream, "_send_wsproto_event", _send_wsproto_event)
    setattr(WSStream, "handle", _handle)
    setattr(WSStream, "_pyngx_close_fix", True)
    return True
