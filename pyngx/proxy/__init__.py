"""Proxying to upstream servers: header rules (headers.py) and HTTP (http.py)."""
