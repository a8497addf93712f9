"""Helpers shared by the benchmark scripts: fake upstreams in their own process, gunicorn, redis-server."""
