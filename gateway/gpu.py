"""GPU telemetry: NVML (nvidia-ml-py), else `nvidia-smi`, else "no GPU"; sampled off the request path.

A daemon thread (started on first use, so after gunicorn forks) refreshes the sample every
GPU_SAMPLE_SECONDS; readers get the latest sample from memory. Works inside containers as long as
the NVIDIA runtime exposes the driver (libnvidia-ml or nvidia-smi).
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

log = logging.getLogger("gateway.gpu")
SMI_FIELDS = "index,name,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw"


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    memory_total_bytes: int
    memory_used_bytes: int
    utilization_ratio: float | None   # 0..1
    temperature_celsius: float | None
    power_watts: float | None

    @property
    def memory_free_bytes(self) -> int:
        return max(0, self.memory_total_bytes - self.memory_used_bytes)

    def as_dict(self) -> dict:
        return asdict(self) | {"memory_free_bytes": self.memory_free_bytes}


@dataclass(frozen=True)
class GpuReport:
    source: str                        # "nvml", "nvidia-smi" or "none"
    gpus: tuple[GpuSample, ...] = ()
    detail: str = ""
    sampled_at: float = 0.0


def read_nvml() -> tuple[GpuSample, ...]:
    import pynvml  # nvidia-ml-py; raises NVMLError when no driver is present

    pynvml.nvmlInit()
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            out.append(GpuSample(
                i, name.decode() if isinstance(name, bytes) else str(name), int(mem.total), int(mem.used),
                _optional(lambda h=h: pynvml.nvmlDeviceGetUtilizationRates(h).gpu / 100),
                _optional(lambda h=h: float(pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU))),
                _optional(lambda h=h: pynvml.nvmlDeviceGetPowerUsage(h) / 1000)))
        return tuple(out)
    finally:
        pynvml.nvmlShutdown()


def read_nvidia_smi(binary: str = "nvidia-smi") -> tuple[GpuSample, ...]:
    # A fixed argument list; the binary is nvidia-smi as found on PATH.
    text = subprocess.run([binary, f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader,nounits"],  # noqa: S603
                          capture_output=True, text=True, timeout=5, check=True).stdout
    out = []
    for row in csv.reader(io.StringIO(text)):
        if len(row) < 7:
            continue
        idx, name, total, used, util, temp, power = (c.strip() for c in row[:7])
        out.append(GpuSample(int(idx), name, int(float(total)) * 2**20, int(float(used)) * 2**20,
                             _number(util, 0.01), _number(temp), _number(power)))
    return tuple(out)


def _optional(fn: Callable[[], float]) -> float | None:
    """Some GPUs do not report every field (NVML raises NotSupported): leave it out."""
    try:
        return fn()
    except Exception:  # noqa: BLE001 - pynvml.NVMLError_NotSupported and friends
        return None


def _number(text: str, scale: float = 1.0) -> float | None:
    try:
        return float(text) * scale
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def detect() -> GpuReport:
    """NVML first, then nvidia-smi, then no GPU; never raises."""
    try:
        return GpuReport("nvml", read_nvml(), sampled_at=time.time())
    except Exception as exc:  # noqa: BLE001 - no library, no driver, no device: try the next source
        nvml_error = f"nvml: {type(exc).__name__}"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            return GpuReport("nvidia-smi", read_nvidia_smi(smi), detail=nvml_error, sampled_at=time.time())
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            return GpuReport("none", (), f"{nvml_error}; nvidia-smi: {type(exc).__name__}", time.time())
    return GpuReport("none", (), f"{nvml_error}; nvidia-smi not found", time.time())


class GpuMonitor:
    def __init__(self, interval: float = 5.0, probe: Callable[[], GpuReport] = detect):
        self.interval, self.probe = interval, probe
        self._report: GpuReport | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def report(self, wait: float = 2.0) -> GpuReport:
        """The latest sample; the first call starts the sampler and waits briefly for its first result."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
                self._thread.start()
        self._ready.wait(wait)
        return self._report or GpuReport("none", (), "first sample not ready yet")

    def _run(self) -> None:
        while True:
            self._report = self.probe()
            self._ready.set()
            if self._report.source == "none" and self.interval > 0:
                time.sleep(max(self.interval, 60.0))  # no GPU now: look again rarely
            else:
                time.sleep(self.interval)

    def free_memory_bytes(self) -> int | None:
        """Largest free memory on any GPU, from the last sample (None: no GPU or no sample yet)."""
        report = self._report
        if report is None or not report.gpus:
            return None
        return max(g.memory_free_bytes for g in report.gpus)
