"""A typed Python client generated from an OpenAPI document by openapi-python-client (a
maintained generator, as a client of the API would use), imported from a folder of its own.

The generator is looked for as $OPENAPI_PYTHON_CLIENT, then on PATH, then in the repository's
.venv-openapi, where `make test` installs it: it pins typer below the version Bazaar's own
command line is installed with, so it gets a venv of its own, as checkov does.
"""

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.scaled import _unavailable

GENERATOR_VENV = Path(__file__).resolve().parents[1] / ".venv-openapi"
GENERATOR = "openapi-python-client"
LEFT_OUT = re.compile(r"WARNING parsing (\w+) (\S+) within \w+\. Endpoint will not be generated")


def generator() -> str:
    found = (
        os.environ.get("OPENAPI_PYTHON_CLIENT")
        or shutil.which(GENERATOR)
        or shutil.which(GENERATOR, path=str(GENERATOR_VENV / "bin"))
    )
    if not found:
        _unavailable(f"{GENERATOR} is not installed: `make test` installs it in .venv-openapi")
    return str(found)


@dataclass(frozen=True)
class GeneratedClient:
    package: str
    """Its import name (one of its own for each generation: no two clash in one session)."""
    left_out: list[str]
    """The operations the generator could not express, as `METHOD /path`."""
    output: str
    """What the generator said."""

    def client(self, base_url: str, token: str | None = None) -> Any:
        """A client of the API at `base_url`, signed in with `token` (an access token)."""
        package = importlib.import_module(self.package)
        if token is None:
            return package.Client(base_url=base_url, timeout=10.0)
        return package.AuthenticatedClient(base_url=base_url, token=token, timeout=10.0)

    def operation(self, tag: str, operation: str) -> ModuleType:
        """The module of one operation (`sync_detailed`, `asyncio`...): by the tag it is listed
        under and its `operationId` in snake case (`orders`, `place_order`)."""
        return importlib.import_module(f"{self.package}.api.{tag}.{operation}")

    @property
    def models(self) -> ModuleType:
        return importlib.import_module(f"{self.package}.models")


@contextmanager
def generated(document: dict[str, Any], folder: Path) -> Iterator[GeneratedClient]:
    """The client of `document`, generated into `folder` and importable while in use."""
    command = generator()
    source = folder / "openapi.json"
    source.write_text(json.dumps(document))
    package = f"bazaar_client_{uuid.uuid4().hex[:8]}"
    # its post-generation hook formats the code with ruff, installed beside it
    path = f"{Path(command).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    arguments = ["--path", str(source), "--meta", "none", "--output-path", str(folder / package)]
    done = subprocess.run(
        [command, "generate", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": path},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    left_out = sorted(f"{method} {route}" for method, route in LEFT_OUT.findall(output))
    sys.path.insert(0, str(folder))
    try:
        yield GeneratedClient(package, left_out, output)
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name.split(".")[0] == package]:
            del sys.modules[name]
