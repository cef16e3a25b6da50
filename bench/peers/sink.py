"""An upload sink: reads and discards a request body, then answers 200.

nginx cannot easily swallow a 1 GiB upload behind a proxy, so the upload
cases end here. Built on aiohttp.web (its C parser handles both
Content-Length and chunked bodies); the answer names the byte count so the
bench can check that the whole body arrived.

Usage: python bench/peers/sink.py PORT. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    n = 0
    async for chunk in request.content.iter_any():
        n += len(chunk)
    return web.Response(text=f"{n}\n")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    args = p.parse_args()
    app = web.Application(client_max_size=0)
    app.router.add_route("*", "/{tail:.*}", handle)
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = None
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
