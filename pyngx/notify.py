"""systemd's service notification protocol (sd_notify), in a few lines.

Owns: sending ``READY=1``, ``RELOADING=1``, ``STOPPING=1``, ``STATUS=...``
datagrams to ``$NOTIFY_SOCKET`` when systemd (Type=notify) set it.

Must not: block: a missing or dead socket is ignored.

Source: systemd docs: sd_notify(3), "Notes" (the datagram protocol), and
systemd.service(5), Type=notify-reload (RELOADING=1 with MONOTONIC_USEC).
"""

from __future__ import annotations

import os
import socket
import time


def _address() -> str | None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return None
    # "@name" is a socket in the abstract namespace.
    return "\0" + addr[1:] if addr.startswith("@") else addr


def notify(*fields: str) -> bool:
    """Send ``fields`` (e.g. "READY=1") as one datagram to ``$NOTIFY_SOCKET``.

    Returns:
        True when a datagram was sent, False when not under systemd or on error.
    """
    addr = _address()
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall("\n".join(fields).encode())
        return True
    except OSError:
        return False


def ready(status: str = "") -> bool:
    """READY=1 (start-up or reload finished)."""
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def reloading() -> bool:
    """RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload expects."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}")


def stopping() -> bool:
    """STOPPING=1 (shutdown began)."""
    return notify("STOPPING=1")
