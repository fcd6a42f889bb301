"""docs/support.md is what scripts/gen_support_matrix.py generates from the route and codec tables."""

from __future__ import annotations

import importlib.util

from tests.gateway_process import ROOT


def test_support_matrix_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_support_matrix", ROOT / "scripts" / "gen_support_matrix.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "support.md").read_text() == module.render(), (
        "docs/support.md is stale: run .venv/bin/python scripts/gen_support_matrix.py"
    )
