"""Processes the harness starts, and what /proc says about them: CPU, RSS, machine-wide CPU.

Every process the harness starts gets its own session (so its process group id is its pid) and is
stopped by that id only: SIGTERM to the group, SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

CLK = os.sysconf("SC_CLK_TCK")
_LIVE: dict[int, Managed] = {}  # every process group started and not yet stopped
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces: split after the last ')'
    return text[text.rfind(")") + 2:].split()


def group_pids(pgid: int) -> list[int]:
    """Every live process whose process group is `pgid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        # fields[0] is state (field 3 of stat); pgrp is field 5 -> index 2
        if fields is not None and len(fields) > 2 and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime (and their reaped children's) of `pids`, in seconds."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None and len(fields) > 14:
            ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks / CLK


def rss_each(pids: Sequence[int]) -> list[int]:
    """RSS in bytes of each process that still exists."""
    out = []
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            out.append(int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE)
    return out


def rss_bytes(pids: Sequence[int]) -> int:
    return sum(rss_each(pids))


def largest_rss_bytes(pgid: int | None) -> int:
    """The largest single process of a group: for Tollgate, its one worker."""
    return max(rss_each(group_pids(pgid)), default=0) if pgid is not None else 0


def machine_busy() -> dict[str, float]:
    """Busy CPU seconds since boot, machine-wide ("cpu") and per core ("cpu0", ...)."""
    out: dict[str, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu"):
            break
        name, *values = line.split()
        t = [int(v) for v in values] + [0] * 8
        # user nice system idle iowait irq softirq steal (guest time is already in user)
        out[name] = (t[0] + t[1] + t[2] + t[5] + t[6] + t[7]) / CLK
    return out


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Managed:
    """A started process (group) with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    started_at: float = field(default_factory=time.perf_counter)

    @property
    def pgid(self) -> int:
        return self.proc.pid

    def pids(self) -> list[int]:
        return group_pids(self.pgid) if self.proc.poll() is None else []

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 8.0) -> None:
        _LIVE.pop(self.pgid, None)
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.pgid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        # stragglers left in the group by a parent that exited first
        for pid in group_pids(self.pgid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def start(name: str, argv: Sequence[str], log: Path, cpus: str | None,
          env: Mapping[str, str | None] | None = None, cwd: Path | None = None) -> Managed:
    """Start `argv` in its own session, pinned with taskset to `cpus` (e.g. "0") when given.
    `env` adds to the environment; a None value removes that variable."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full = ["taskset", "-c", cpus, *argv] if cpus is not None else list(argv)
    merged = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    with open(log, "wb") as out:
        proc = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=merged, cwd=cwd, start_new_session=True)
    managed = Managed(name, proc, log)
    _LIVE[managed.pgid] = managed
    return managed


def stop_all() -> None:
    """Stop every process group this process started and has not stopped yet (at exit)."""
    for managed in list(_LIVE.values()):
        managed.stop(grace=3.0)


class Periodic:
    """Calls `sample()` every `interval` seconds on a thread between `__enter__` and `__exit__`
    (while `active()`), and once more at the exit."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> int:
        raise NotImplementedError

    def active(self) -> bool:
        return True

    def __enter__(self) -> Self:
        if self.active():
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.sample()


class RssSampler(Periodic):
    """Samples the summed RSS of a process group every `interval` seconds; keeps the peak."""

    def __init__(self, pgid: int | None, interval: float = 0.1) -> None:
        super().__init__(interval)
        self.pgid = pgid
        self.peak = 0

    def active(self) -> bool:
        return self.pgid is not None

    def sample(self) -> int:
        if self.pgid is None:
            return 0
        value = rss_bytes(group_pids(self.pgid))
        self.peak = max(self.peak, value)
        return value


@dataclass
class CpuWindow:
    """CPU used during a window by the target group, the mock, the load generator, the harness
    itself and everything else on the machine (busy time minus ours)."""

    target_pgid: int | None
    mock_pgid: int
    loadgen_core: str
    t0: float = 0.0
    target0: float = 0.0
    mock0: float = 0.0
    children0: float = 0.0
    self0: float = 0.0
    busy0: dict[str, float] = field(default_factory=dict)
    result: dict[str, float] = field(default_factory=dict)

    def _target(self) -> float:
        return cpu_seconds(group_pids(self.target_pgid)) if self.target_pgid is not None else 0.0

    def __enter__(self) -> CpuWindow:
        self.t0 = time.perf_counter()
        self.busy0 = machine_busy()
        self.target0 = self._target()
        self.mock0 = cpu_seconds(group_pids(self.mock_pgid))
        self.children0 = children_cpu()
        self.self0 = self_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.perf_counter() - self.t0, 1e-9)
        busy = machine_busy()
        target = self._target() - self.target0
        mock = cpu_seconds(group_pids(self.mock_pgid)) - self.mock0
        loadgen = children_cpu() - self.children0  # the load generator is the only child reaped
        harness = self_cpu() - self.self0
        total = busy.get("cpu", 0.0) - self.busy0.get("cpu", 0.0)
        core_key = f"cpu{self.loadgen_core}"
        core = busy.get(core_key, 0.0) - self.busy0.get(core_key, 0.0)
        self.result = {
            "wall_s": wall,
            "target_cores": target / wall,
            "mock_cores": mock / wall,
            "loadgen_cores": loadgen / wall,
            "harness_cores": harness / wall,
            "others_cores": max(0.0, total - target - mock - loadgen - harness) / wall,
            # the measured core: the target and the load generator are pinned there
            "others_core0_cores": max(0.0, core - target - loadgen) / wall,
            "target_cpu_s": target,
        }
