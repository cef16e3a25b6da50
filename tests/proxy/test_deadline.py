"""pyngx.proxy.deadline: the lazily re-armed timer behind proxy_read_timeout on bodies and WebSocket timeouts."""

from __future__ import annotations

import asyncio

from pyngx.proxy.deadline import Deadline


async def test_expires_only_after_a_whole_pending_period() -> None:
    """Re-arming moves the deadline without a new timer; a disarmed wait never expires."""
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    d = Deadline(loop, 0.2, lambda: fired.append(loop.time()))
    t0 = loop.time()
    d.arm()
    await asyncio.sleep(0.15)
    d.arm()  # a new wait began: the period starts again
    handle = d.handle
    await asyncio.sleep(0.1)
    assert fired == [] and d.handle is not None
    await asyncio.sleep(0.2)
    assert len(fired) == 1 and fired[0] - t0 >= 0.35 - 0.01
    assert handle is not None
    d.disarm()
    await asyncio.sleep(0.3)
    assert len(fired) == 1


async def test_cancel_drops_the_callback() -> None:
    """A cancelled deadline keeps no reference to its owner (no cycle outlives the operation)."""

    class Owner:
        def expire(self) -> None:
            raise AssertionError("cancelled deadline expired")

    owner = Owner()
    d = Deadline(asyncio.get_running_loop(), 0.05, owner.expire)
    d.arm()
    d.cancel()
    assert d.handle is None and d.expire != owner.expire
    await asyncio.sleep(0.1)
