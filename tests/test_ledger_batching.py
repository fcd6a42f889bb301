"""The owner's periodic ingest waits for a batch (`INGEST_BATCH_BYTES`) or for its oldest rows
to have waited `INGEST_MAX_WAIT_S`, while a query still sees every row spooled before it."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from decimal import Decimal
from pathlib import Path

from gateway.usage import owner as owner_module
from gateway.usage.lock import try_lock
from gateway.usage.owner import Owner
from gateway.usage.record import UsageRecord
from gateway.usage.spool import SpoolWriter, ready_segments

NOW = dt.datetime.now(dt.UTC)


def spool_rows(data: Path, prefix: str, n: int) -> None:
    writer = SpoolWriter(data / "spool", rotate_s=3600)
    for i in range(n):
        writer.append(UsageRecord(request_id=f"{prefix}-{i}", started_at=NOW, finished_at=NOW, key_id="k",
                                  status=200, prompt_tokens=3, cost_usd=Decimal("0.000001")))
    writer.close()


def age(data: Path, seconds: float) -> None:
    then = time.time() - seconds
    for path in ready_segments(data / "spool"):
        os.utime(path, (then, then))


async def count(owner: Owner) -> int:
    answer = await owner.handle({"op": "query", "sql": "SELECT count(*) FROM usage"})
    return int(answer["rows"][0][0])


async def scenario(data: Path) -> None:
    fd = try_lock(data)
    assert fd is not None
    owner = Owner(data, fd, lambda: None, parquet=None)
    await owner.start()
    try:
        spool_rows(data, "small", 10)
        assert await owner.ingest_due() == 0  # fresh and small: waits for more
        assert len(ready_segments(data / "spool")) == 1
        age(data, owner_module.INGEST_MAX_WAIT_S + 0.5)
        assert await owner.ingest_due() == 10  # waited long enough

        spool_rows(data, "one", 1)
        size = sum(p.stat().st_size for p in ready_segments(data / "spool"))
        big = owner_module.INGEST_BATCH_BYTES // size + 1
        spool_rows(data, "big", big)  # a batch at once, however fresh
        assert await owner.ingest_due() == big + 1

        spool_rows(data, "asked", 3)
        assert await owner.ingest_due() == 0
        assert await count(owner) == 10 + 1 + big + 3  # a query ingests first: read-your-writes
        assert ready_segments(data / "spool") == []
    finally:
        await owner.close()


def test_the_periodic_ingest_waits_for_a_batch_but_queries_see_every_row(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    asyncio.run(scenario(data))
