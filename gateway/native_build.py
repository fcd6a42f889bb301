"""Builds the compiled request path (gateway/compiled.py): `python -m gateway.native_build`
compiles `MODULES` with mypyc and puts the extension modules next to their sources;
`python -m gateway.native_build clean` removes them. `make run` and `make test` run it when a
source changed. Without mypy or a C compiler it says so and the gateway runs as Python
(`--strict`: fail instead); `TOLLGATE_COMPILE=0` skips the build."""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .compiled import GROUP, MANIFEST, MODULES, ROOT, built_files, digest, extension_suffix, source_of, status


def clean() -> None:
    for path in [*built_files(), MANIFEST]:
        path.unlink(missing_ok=True)


def build(jobs: int = 0) -> None:
    """Compile MODULES with mypyc in a scratch copy of the package, then move the extension
    modules next to the sources. Raises when mypy/mypyc or a C compiler is missing."""
    from mypyc.build import mypycify  # a dev dependency (mypy): only the build needs it
    from setuptools import setup  # type: ignore[import-untyped]

    with tempfile.TemporaryDirectory(prefix="tollgate-native-") as tmp:
        work = Path(tmp)
        shutil.copytree(ROOT, work / "gateway", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        # the project's mypy settings (modules without type information are not followed)
        (work / "mypy.ini").write_text(
            "[mypy]\npython_version = 3.11\nstrict = true\nwarn_unused_ignores = false\n"
            "[mypy-celpy.*,lark.*,granian.*,httpx_aiohttp.*,botocore.*]\nignore_missing_imports = true\n"
        )
        sources = [str(source_of(m, Path("gateway"))) for m in MODULES]
        here = os.getcwd()
        os.chdir(work)  # setuptools reads the current directory's project files: none here
        try:
            setup(
                name="tollgate-native",
                ext_modules=mypycify(sources, group_name=GROUP, target_dir="build"),
                script_args=["-q", "build_ext", "--inplace", "-j", str(jobs or os.cpu_count() or 1)],
            )
        finally:
            os.chdir(here)
        clean()
        suffix = extension_suffix()
        for path in built_files():
            shutil.copy2(work / path.relative_to(ROOT.parent), path)
        # the digest of the copy that was compiled (the sources may have changed meanwhile)
        MANIFEST.write_text(json.dumps({"digest": digest(work / "gateway"), "abi": suffix,
                                        "python": sysconfig.get_python_version()}) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["clean"]:
        clean()
        print("compiled request path removed: the gateway runs it as Python")
        return 0
    if "--if-stale" in args and status() == "on":
        print("the compiled request path is up to date")
        return 0
    if os.environ.get("TOLLGATE_COMPILE", "1") == "0":
        clean()
        print("TOLLGATE_COMPILE=0: the request path runs as Python")
        return 0
    try:
        build()
    except (Exception, SystemExit) as exc:  # no compiler, no mypy: the gateway runs as Python
        clean()
        print(f"could not compile the request path ({type(exc).__name__}: {exc}); "
              "the gateway runs it as Python", file=sys.stderr)
        return 1 if "--strict" in args else 0
    print(f"compiled {len(MODULES)} modules of the request path")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
