"""schemas/usage.sql is what the code creates: a stale copy fails here."""

from __future__ import annotations

from gateway.usage.schema import DDL
from tests.gateway_process import ROOT


def test_usage_sql_is_current() -> None:
    assert (ROOT / "schemas" / "usage.sql").read_text() == DDL, "run: tollgate usage schema"
