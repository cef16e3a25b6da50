"""Proxying to upstream servers: the compiled plan (plan.py), header rules (headers.py), HTTP
(http.py, with body.py and failures.py) and WebSocket (websocket.py, ws_upgrade.py, ws_close.py)."""
