"""gunicorn settings for the gateway: `gunicorn -c gateway/gunicorn.conf.py "gateway:create_app()"`.

Worker class gthread: each worker process runs GATEWAY_THREADS threads, and an LLM call spends its
seconds waiting on a socket with the GIL released, so 2 workers x 64 threads hold 128 slow calls at
once with no monkey-patching (the anthropic SDK, requests and redis run unmodified). Sync workers hold
one call per process: 2 workers answer 2 slow calls at a time. scripts/bench_workers.py measures both
(and gevent) side by side; the README has the figures.
"""

import os

_host = os.environ.get("GATEWAY_HOST", "0.0.0.0")  # noqa: S104 - containers listen on all interfaces
_port = os.environ.get("GATEWAY_PORT", "8080")

bind = f"[{_host}]:{_port}" if ":" in _host else f"{_host}:{_port}"
worker_class = "gthread"
workers = int(os.environ.get("GATEWAY_WORKERS", "2"))
threads = int(os.environ.get("GATEWAY_THREADS", "64"))
# With gthread the heartbeat runs beside the request threads, so a 2-minute LLM call does not get
# its worker killed; this only catches a worker that is truly stuck.
timeout = int(os.environ.get("GATEWAY_WORKER_TIMEOUT", "300"))
graceful_timeout = 30
keepalive = 5
backlog = 2048
# Recycle workers now and then so slow leaks in any library cannot grow for days.
max_requests = int(os.environ.get("GATEWAY_MAX_REQUESTS", "20000"))
max_requests_jitter = max_requests // 10
# /dev/shm keeps the heartbeat file off a possibly slow container overlay filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
accesslog = None  # the app logs one structured line per request itself
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Several proxies may sit in front; trust X-Forwarded-* only from loopback by default.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# No gunicornc control socket: unused here, and it would be written under $HOME.
control_socket_disable = True
