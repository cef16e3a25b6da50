"""Upstream groups: peer state (peers.py) and load-balancing methods (balancers.py)."""
