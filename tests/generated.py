"""Files the repository keeps that a module of Bazaar's generates: each must be what it prints."""

import subprocess
import sys
from pathlib import Path


def assert_printed_by(module: str, path: Path) -> None:
    """`path` holds exactly what `python -m module` prints (else it is stale: regenerate it)."""
    printed = subprocess.run(
        [sys.executable, "-m", module], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert path.read_text() == printed, f"{path} is stale: python -m {module} > {path}"
