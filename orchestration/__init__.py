"""Orchestration: runs the parts together (local services, demo stack, cluster runner, admin tool).

The top layer: it may import every other package, and nothing imports it.
"""
