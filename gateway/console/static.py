"""The console's assets (our CSS and JS glue, the vendored uPlot), served from this package's
static/ directory: looked up by name in a table read once, so no path from a request reaches
the file system."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from . import respond
from .web import Proto

DIRECTORY = Path(__file__).resolve().parent / "static"
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".png": "image/png", ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8"}


@cache
def assets() -> dict[str, tuple[str, bytes]]:
    found = {}
    for path in DIRECTORY.iterdir():
        ctype = TYPES.get(path.suffix)
        if ctype is not None and path.is_file():
            found[path.name] = (ctype, path.read_bytes())
    return found


def serve(proto: Proto, name: str) -> bool:
    """Answer with the asset `name`; False if there is none."""
    asset = assets().get(name)
    if asset is None:
        return False
    respond.send(proto, 200, asset[0], asset[1], cache="public, max-age=3600")
    return True
