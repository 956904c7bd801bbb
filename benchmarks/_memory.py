"""Peak resident memory of this process and its children, sampled in a background thread."""
from __future__ import annotations

import threading

import psutil


class PeakRSS:
    """Context manager: `.peak_mb` is the largest summed RSS of this process tree seen."""

    def __init__(self, interval_s: float = 0.1, pid: int | None = None):
        self.interval_s, self.peak_mb = interval_s, 0.0
        self._proc = psutil.Process(pid)
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            total = 0
            for p in [self._proc, *self._proc.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    continue  # a child that just exited
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "PeakRSS":
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
