"""docs/cli.md is what scripts/gen_cli_doc.py generates from the real parser."""

from __future__ import annotations

import importlib.util

from tests.gateway_process import ROOT


def test_cli_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_cli_doc", ROOT / "scripts" / "gen_cli_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "cli.md").read_text() == module.render(), (
        "docs/cli.md is stale: run .venv/bin/python scripts/gen_cli_doc.py"
    )
