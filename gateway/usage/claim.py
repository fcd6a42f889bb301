"""One live gateway per `node_id` in a shared Parquet directory (see parquet.py).

Two machines configured with the same node id would write the same `node=<id>` partition and
`node` would no longer tell them apart. So the exporter claims its node id before it writes:
`<dir>/_claims/<node_id>.json` (readers of `**/*.parquet` never see it; Spark and Hive skip `_`
directories) records a random token of this process plus its host, data dir and ledger id, and
is written atomically (a temporary file, then link or rename).

The exporter checks the claim before every export and refreshes it every `refresh_s`, idle or
not. What it does with the claim it finds:

- none: takes it (created with link(2), so of two racing instances one wins);
- its own token: keeps it;
- another token while this instance held the claim: someone took it over: refused;
- another token, not refreshed for `ttl_s` (its holder is gone): takes it over;
- at start, another token from the same ledger, or the same host and data dir: a previous run
  of this node (the ingest lock rules out a concurrent one): takes it, no alarm;
- otherwise a live second instance: refused.

Refused, the exporter writes nothing, logs one ERROR naming both instances and the setting to
change, and leaves `<data_dir>/parquet-claim.json` for /readyz, /admin/policy and /metrics; rows
stay in the outbox. It keeps checking and, once the other claim expires or is released
(`tollgate usage claims --parquet DIR --release NODE`), takes it and writes what waited.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import msgspec

log = logging.getLogger("tollgate.usage")

CLAIMS_DIR = "_claims"
STATUS_FILE = "parquet-claim.json"
REFRESH_S = 30.0
CLAIM_TTL_S = 300.0  # ten missed refreshes
SETTING = "node_id (environment TOLLGATE_NODE_ID, flag --node-id)"


class Claim(msgspec.Struct, frozen=True):
    node_id: str
    token: str
    host: str
    data_dir: str
    ledger_id: str
    pid: int
    claimed_at: str
    refreshed_at: str

    def age_s(self) -> float:
        """Seconds since the holder last refreshed it, by this machine's clock."""
        try:
            stamp = dt.datetime.fromisoformat(self.refreshed_at)
        except ValueError:
            return float("inf")
        return time.time() - stamp.timestamp()

    def expires(self, ttl_s: float) -> str:
        try:
            stamp = dt.datetime.fromisoformat(self.refreshed_at) + dt.timedelta(seconds=ttl_s)
        except ValueError:
            return "now"
        return stamp.isoformat(timespec="seconds")

    def where(self) -> str:
        return f"host {self.host}, data dir {self.data_dir}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def claim_path(directory: Path, node_id: str) -> Path:
    return directory / CLAIMS_DIR / f"{node_id}.json"


def read_claim(path: Path) -> Claim | None:
    """The claim in `path`; None when there is none. A file that is not a claim counts as none."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=Claim)
    except FileNotFoundError:
        return None
    except (msgspec.DecodeError, msgspec.ValidationError):
        log.warning("ignoring %s: not a node claim", path)
        return None


def _write(path: Path, data: bytes, exclusive: bool) -> bool:
    """Atomically; `exclusive`: only if no file is there (False if one is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError:  # no hard links on this file system: rename, still atomic
                os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return True


def read_problem(data_dir: Path) -> dict[str, Any] | None:
    """The refused exporter's report in `data_dir` (for the server's status endpoints), if any."""
    try:
        problem = msgspec.json.decode((data_dir / STATUS_FILE).read_bytes())
    except (OSError, msgspec.DecodeError):
        return None
    return problem if isinstance(problem, dict) else None


def list_claims(directory: Path) -> list[Claim]:
    """Every node's claim in a Parquet directory, by node id."""
    found = (read_claim(p) for p in sorted((directory / CLAIMS_DIR).glob("*.json")))
    return [c for c in found if c is not None]


def release(directory: Path, node_id: str) -> Claim | None:
    """Remove a node's claim (its holder is gone for good); returns what it was, None if none."""
    path = claim_path(directory, node_id)
    claim = read_claim(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    return claim


class NodeClaim:
    """This exporter's claim on its node id; `check()` before writing Parquet."""

    def __init__(
        self,
        directory: Path,
        node_id: str,
        data_dir: Path,
        ledger_id: str,
        ttl_s: float = CLAIM_TTL_S,
        refresh_s: float = REFRESH_S,
    ) -> None:
        self.directory, self.path = directory, claim_path(directory, node_id)
        self.status_path = data_dir / STATUS_FILE
        self.ttl_s, self.refresh_s = ttl_s, refresh_s
        now = _now()
        self.mine = Claim(node_id, uuid.uuid4().hex, socket.gethostname(), str(data_dir.resolve()),
                          ledger_id, os.getpid(), now, now)
        self.state: Literal["new", "held", "refused"] = "new"
        self.holder: Claim | None = None  # the other instance, while refused
        self._checked = self._written = float("-inf")

    def check(self, due_only: bool = False) -> bool:
        """Whether this instance may write its node's files now. Reads the claim file (with
        `due_only`, at most every refresh_s) and refreshes ours when due. Raises OSError when
        the directory is unreachable (the caller retries later)."""
        now = time.monotonic()
        if due_only and now - self._checked < self.refresh_s:
            return self.state == "held"
        self._checked = now
        other = read_claim(self.path)
        if other is not None and other.token == self.mine.token:
            if self.state != "held":
                self._took(None)
            if now - self._written >= self.refresh_s:
                self._put(exclusive=False)
            return True
        previous = other
        if other is None:
            if self.state == "held":
                log.warning("usage Parquet: the claim %s was removed; claimed again", self.path)
            if not self._put(exclusive=True):  # another instance created it first
                self._refuse(read_claim(self.path))
                return False
        elif self.state != "held" and (other.age_s() > self.ttl_s or self._earlier_run(other)):
            self._put(exclusive=False)
        else:
            self._refuse(other)
            return False
        found = read_claim(self.path)  # read back: of two instances taking it at once, one goes on
        if found is not None and found.token != self.mine.token:
            self._refuse(found)
            return False
        self._took(previous)
        return True

    def _earlier_run(self, other: Claim) -> bool:
        return self.state == "new" and (
            other.ledger_id == self.mine.ledger_id
            or (other.host, other.data_dir) == (self.mine.host, self.mine.data_dir)
        )

    def _put(self, exclusive: bool) -> bool:
        self.mine = msgspec.structs.replace(self.mine, refreshed_at=_now())
        if _write(self.path, msgspec.json.encode(self.mine), exclusive):
            self._written = time.monotonic()
            return True
        return False

    def _took(self, previous: Claim | None) -> None:
        if previous is not None and not self._earlier_run(previous):
            log.warning("usage Parquet: took over node_id %r in %s from %s (its claim was last "
                        "refreshed at %s)", self.mine.node_id, self.directory, previous.where(),
                        previous.refreshed_at)
        if self.state == "new":
            log.info("usage Parquet: node_id %r claimed in %s", self.mine.node_id, self.directory)
        if self.state == "refused":
            log.warning("usage Parquet export resumed: node_id %r in %s is claimed by this gateway "
                        "again; the queued rows are written now", self.mine.node_id, self.directory)
        self.state, self.holder = "held", None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.status_path)

    def _refuse(self, holder: Claim | None) -> None:
        if holder is None or (self.state == "refused" and self.holder is not None
                              and holder.token == self.holder.token):
            return  # already reported (or the file vanished: checked again next time)
        self.state, self.holder = "refused", holder
        message = (
            f"usage Parquet export stopped: node_id {self.mine.node_id!r} in {self.directory} is "
            f"claimed by another live gateway ({holder.where()}, pid {holder.pid}, last refreshed "
            f"{holder.refreshed_at}); this one is {self.mine.where()}. Give each machine its own "
            f"{SETTING}. Nothing is lost: rows stay queued in this node's ledger and are written "
            f"once the claim is free (it expires at {holder.expires(self.ttl_s)} if its "
            f"holder is gone, or run `tollgate usage claims --parquet {self.directory} --release "
            f"{self.mine.node_id}`)."
        )
        log.error("%s", message)
        problem = {
            "status": "node_id_conflict",
            "node_id": self.mine.node_id,
            "parquet_dir": str(self.directory),
            "this": {"host": self.mine.host, "data_dir": self.mine.data_dir},
            "holder": {"host": holder.host, "data_dir": holder.data_dir, "pid": holder.pid,
                       "refreshed_at": holder.refreshed_at},
            "since": _now(),
            "message": message,
        }
        with contextlib.suppress(OSError):
            _write(self.status_path, msgspec.json.encode(problem), exclusive=False)
