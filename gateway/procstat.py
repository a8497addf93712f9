"""Memory and CPU of the gunicorn master and its workers, read from /proc when /metrics is scraped.

prometheus_client's process collector is off in multiprocess mode (a scrape would describe whichever worker
answered it), yet the container's memory limit applies to them all: every process is reported, by pid and role,
so a dashboard can sum them and find the one that grows. Linux only; elsewhere nothing is reported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class Process:
    pid: int
    role: str            # "master" or "worker"
    rss_bytes: int
    cpu_seconds: float   # user + system


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 on), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: fields are counted after its ")".
    return raw[raw.rfind(")") + 2:].split()


def _read(pid: int, role: str) -> Process | None:
    fields = _stat(pid)
    if fields is None:
        return None  # exited since it was listed
    utime, stime, rss = int(fields[11]), int(fields[12]), int(fields[21])
    return Process(pid, role, rss * _PAGE, (utime + stime) / _TICKS)


def _children(parent: int) -> list[int]:
    try:
        with open(f"/proc/{parent}/task/{parent}/children") as f:  # CONFIG_PROC_CHILDREN: most kernels
            return [int(p) for p in f.read().split()]
    except OSError:
        pass
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(entry)
            if fields is not None and int(fields[1]) == parent:
                found.append(int(entry))
    return found


def gunicorn_processes() -> list[Process]:
    """This worker's master (its parent) and every worker of it; [] off Linux."""
    if not os.path.isdir("/proc/self"):
        return []
    master = os.getppid()
    listed = [_read(master, "master"), *(_read(pid, "worker") for pid in _children(master))]
    return [p for p in listed if p is not None]
