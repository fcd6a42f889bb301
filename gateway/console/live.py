"""Live requests per second from the serving worker's request counters (what /metrics exports
as tollgate_requests_total): sampled whenever the console asks, the rate taken between now and
the oldest sample of the last 30 s. Each worker counts its own requests, so with several workers
the figure is this worker's (the page says how many workers there are)."""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any

from .web import Worker

WINDOW_S = 30.0


class Live:
    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque(maxlen=64)

    def sample(self, worker: Worker) -> dict[str, Any]:
        now, total = time.monotonic(), sum(worker.counters.values())
        while self._samples and now - self._samples[0][0] > WINDOW_S:
            self._samples.popleft()
        rps = None
        if self._samples and now - self._samples[0][0] >= 0.5:
            then, before = self._samples[0]
            rps = round((total - before) / (now - then), 2)
        self._samples.append((now, total))
        return {"rps": rps, "total": total, "pid": os.getpid(), "workers": worker.settings.workers}
