"""Byte-compile the grpcpki the benchmarks run, as `pip install .` does at install time.

An editable install (`pip install -e .`), or a shell with PYTHONDONTWRITEBYTECODE=1, leaves
grpcpki's modules without `.pyc` files, so every `grpcpki` process the benchmarks time would
compile ~35 modules first (~60 ms), a cost no installed grpcpki pays and the baselines never
pay either (cryptography's and click's `.pyc` files are in site-packages). Writing them is what
the installer does; py_compile writes them whatever PYTHONDONTWRITEBYTECODE says.
"""

from __future__ import annotations

import compileall
import importlib.util
from pathlib import Path


def precompile_grpcpki(checkout: str | None = None) -> Path:
    """Compile the grpcpki package in ``checkout`` (default: the one this interpreter imports)."""
    if checkout is not None:
        package = Path(checkout) / "grpcpki"
    else:
        spec = importlib.util.find_spec("grpcpki")
        if spec is None or spec.origin is None:
            raise SystemExit("grpcpki is not installed in this interpreter: pip install -e '.[test]' first")
        package = Path(spec.origin).parent
    if not compileall.compile_dir(str(package), quiet=1):
        raise SystemExit(f"could not byte-compile {package}")
    return package
