"""What the machine was doing during a run: CPU model and count, load averages, CPU busy time.

The machine is shared (other people's tests run beside the load), so every figure of a run is
reported with the load the machine carried while it was measured.
"""

from __future__ import annotations

import os
import statistics
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


def describe_machine() -> dict[str, object]:
    """CPU count, model and memory, for the report."""
    model = ""
    memory = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        memory = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    except (OSError, IndexError):
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory": memory}


def _cpu_times() -> tuple[int, int]:
    """Total and idle (idle + iowait) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values), values[3] + values[4]


@dataclass
class MachineLoad:
    """Samples the 1-minute load average every ``every`` seconds while the block runs, and the
    share of CPU time the whole machine was busy (every process, ours and others')."""

    every: float = 5.0
    samples: list[float] = field(default_factory=list)
    busy: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _start: tuple[int, int] = (0, 0)

    def __enter__(self) -> MachineLoad:
        self._start = _cpu_times()
        self.samples.append(os.getloadavg()[0])
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        total, idle = _cpu_times()
        spent = total - self._start[0]
        self.busy = 1 - (idle - self._start[1]) / spent if spent else 0.0

    def summary(self) -> dict[str, float]:
        """Mean and maximum 1-minute load average, and the CPU busy share (0–1)."""
        return {
            "load1_mean": round(statistics.fmean(self.samples), 2) if self.samples else 0.0,
            "load1_max": round(max(self.samples), 2) if self.samples else 0.0,
            "cpu_busy": round(self.busy, 3),
        }

    def line(self) -> str:
        """One human-readable line."""
        s = self.summary()
        return (
            f"machine: load average (1 min) mean {s['load1_mean']:.2f}, max {s['load1_max']:.2f}; "
            f"CPU busy {s['cpu_busy']:.0%} of {os.cpu_count()} cores"
        )
