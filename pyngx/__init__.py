"""pyngx: an nginx-style reverse proxy daemon.

The package reads nginx's configuration language (pyngx.config), routes
requests the way nginx does (pyngx.routing) and proxies HTTP to upstream
servers over pooled aiohttp sessions (pyngx.proxy), served by Hypercorn
(pyngx.server).
"""

__version__ = "0.1.0"
NAME = "pyngx"
