"""`tollgate usage ...` finds the ledger the way `tollgate serve` does (`--data-dir`,
`TOLLGATE_DATA_DIR`, the `--config` file's `data_dir`), and never creates an empty one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gateway.usage.store import LedgerStore
from tests.gateway_process import ROOT


def usage(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("TOLLGATE_DATA_DIR", "TOLLGATE_CONFIG")}
    return subprocess.run([sys.executable, "-m", "gateway", "usage", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=60, env={**base, "PYTHONPATH": str(ROOT), **(env or {})})


def make_ledger(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    LedgerStore(data_dir / "usage.duckdb").close()


def test_no_ledger_is_an_error_and_nothing_is_created(tmp_path: Path) -> None:
    for args in (["sql", "SELECT count(*) FROM usage"], ["report"],
                 ["export", "--out", str(tmp_path / "u.parquet")]):
        done = usage(tmp_path, *args)
        assert done.returncode == 1, done
        assert done.stderr.strip() == (
            f"no ledger at {tmp_path}/data/usage.duckdb (start the gateway, or pass --data-dir)"
        )
        assert not (tmp_path / "data").exists()
    done = usage(tmp_path, "sql", "SELECT 1", "--data-dir", "elsewhere")
    assert done.returncode == 1 and f"no ledger at {tmp_path}/elsewhere/usage.duckdb" in done.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_the_ledger_is_found_as_serve_finds_it(tmp_path: Path) -> None:
    ledger = tmp_path / "var" / "tollgate"
    make_ledger(ledger)
    query = ["sql", "SELECT count(*) AS n FROM usage", "--format", "json"]
    by_env = usage(tmp_path, *query, env={"TOLLGATE_DATA_DIR": str(ledger)})
    assert by_env.returncode == 0, by_env.stderr
    assert json.loads(by_env.stdout) == [{"n": 0}]

    config = tmp_path / "tollgate.toml"
    config.write_text(f'data_dir = "{ledger}"\nport = 9999\n')
    by_flag = usage(tmp_path, *query, "--config", str(config))
    assert by_flag.returncode == 0, by_flag.stderr
    by_config_env = usage(tmp_path, *query, env={"TOLLGATE_CONFIG": str(config)})
    assert by_config_env.returncode == 0, by_config_env.stderr
    by_dir = usage(tmp_path, *query, "--data-dir", str(ledger))
    assert by_dir.returncode == 0, by_dir.stderr
