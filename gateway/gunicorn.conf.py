"""gunicorn settings for the gateway: `gunicorn -c gateway/gunicorn.conf.py "gateway:create_app()"`.

Worker class gthread: an LLM call spends its seconds waiting on a socket with the GIL released, so
threads hold many slow calls at once, and no monkey-patching is needed (the anthropic SDK and its
httpx2, requests, redis and prometheus_client run unmodified). Default 2 workers x 256 threads = 512
calls or streams in flight. scripts/bench/bench_workers.py, upstream taking 1 s, 10 s per class:
200 clients: sync 1.8 req/s (140 errors), gthread 178 req/s (p99 1.22 s), gevent 176 req/s (p99 1.33 s);
400 clients: gthread 327 req/s (p99 1.36 s), gevent 330 req/s (p99 1.39 s). Past its slots gthread
queues, so raise GATEWAY_THREADS for more.
"""

import glob
import os
import tempfile

# Metrics from every worker go to one directory (prometheus_client multiprocess mode). It must be set
# before a worker imports prometheus_client, so here, in the master. Emptied at start: samples of a
# previous run must not be added to this one.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="gateway-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def on_starting(server):
    if workers < _asked_workers:
        server.log.warning("no REDIS_URL: running 1 worker instead of GATEWAY_WORKERS=%d, so that budgets, "
                           "limits and the cache hold (set REDIS_URL to run more)", _asked_workers)
    os.makedirs(_metrics_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(_metrics_dir, "*.db")):  # only prometheus_client's own files
        os.remove(stale)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # its live gauges (in-flight) stop counting


_host = os.environ.get("GATEWAY_HOST", "0.0.0.0")  # noqa: S104 - containers listen on all interfaces
_port = os.environ.get("GATEWAY_PORT", "8080")

bind = f"[{_host}]:{_port}" if ":" in _host else f"{_host}:{_port}"
worker_class = "gthread"
# Without Redis each worker keeps its own spend, budgets, cache and limits: two workers would each allow the
# whole budget. So one worker then (its threads still hold hundreds of calls at once).
_shared_state = bool(os.environ.get("REDIS_URL", "").strip())
_asked_workers = int(os.environ.get("GATEWAY_WORKERS", "2"))
workers = _asked_workers if _shared_state else 1
threads = int(os.environ.get("GATEWAY_THREADS", "256"))
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
