"""pyngx.proxy.failures: aiohttp failures as nginx's statuses, error-log texts and proxy_next_upstream cases.

The texts as nginx's error log reads them are also checked end to end
(tests/proxy/test_http.py, test_websocket.py); these pin the mapping itself.
"""

from __future__ import annotations

import asyncio
import errno

import aiohttp
import pytest

from pyngx.errors import UpstreamError
from pyngx.proxy.failures import FAILURE_STATUSES, failure_kind, upstream_error


class TestUpstreamError:
    @pytest.mark.parametrize(
        ("exc", "status", "reason"),
        [
            (aiohttp.ConnectionTimeoutError(), 504,
             "upstream timed out (110: Connection timed out) while connecting to upstream"),
            (asyncio.TimeoutError(), 504, "upstream timed out (110: Connection timed out) while reading upstream"),
            (aiohttp.SocketTimeoutError(), 504,
             "upstream timed out (110: Connection timed out) while reading upstream"),
            (aiohttp.ServerDisconnectedError(), 502, "upstream prematurely closed connection while reading upstream"),
            (aiohttp.ClientPayloadError("bad chunk"), 502, "upstream sent invalid header while reading upstream"),
            (aiohttp.ClientOSError(errno.ECONNRESET, "reset"), 502,
             "recv() failed (104: Connection reset by peer) while reading upstream"),
        ],
    )
    def test_maps_to_nginx_status_and_text(self, exc: BaseException, status: int, reason: str) -> None:
        """Each aiohttp failure becomes nginx's status and error-log text for the phase."""
        err = upstream_error(exc, "reading upstream")
        assert (err.status, err.reason) == (status, reason)

    def test_unknown_failure_is_a_502_naming_it(self) -> None:
        """A failure aiohttp has no class for is a 502 whose text names the exception."""
        err = upstream_error(RuntimeError("odd"), "reading upstream")
        assert (err.status, err.reason) == (502, "RuntimeError: odd while reading upstream")


class TestFailureKind:
    def test_kinds_are_proxy_next_upstream_cases(self) -> None:
        """504 is "timeout", an invalid answer "invalid_header", anything else "error"."""
        assert failure_kind(UpstreamError(504, "upstream timed out")) == "timeout"
        assert failure_kind(UpstreamError(502, "upstream sent invalid header while reading")) == "invalid_header"
        assert failure_kind(UpstreamError(502, "connect() failed (111: Connection refused)")) == "error"

    def test_only_server_errors_and_429_fail_a_peer(self) -> None:
        """http_403 and http_404 retry on another peer without counting against max_fails."""
        assert FAILURE_STATUSES == {500, 502, 503, 504, 429}
