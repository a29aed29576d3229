"""The baseline's code: a commit's `src/` exported from git, and imported first by the
processes started for it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bazaar.runtime.cluster.cpulimit import CpuGroups
from bench import source
from bench.systems import Embedded

pytestmark = pytest.mark.skipif(
    subprocess.run(["git", "-C", str(source.REPOSITORY), "rev-parse"], check=False).returncode != 0,
    reason="not a git checkout",
)


def test_a_commit_is_exported_and_is_what_its_processes_import(tmp_path: Path) -> None:
    baseline = source.export("HEAD", tmp_path / "baseline-source")

    assert baseline.commit == source.resolve("HEAD") and len(baseline.commit) == 40
    assert baseline.subject
    assert (tmp_path / "baseline-source" / "src" / "bazaar" / "__init__.py").is_file()
    assert any((tmp_path / "baseline-source" / "src" / "bazaar").glob("*/migrations/*.py"))
    system = Embedded(tmp_path / "embedded", None, CpuGroups("unused"), source=baseline)
    done = subprocess.run(
        [sys.executable, "-c", "import bazaar; print(bazaar.__file__)"],
        env=system.environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(done.stdout.strip()).is_relative_to(tmp_path / "baseline-source" / "src")
    assert baseline.describe()["ref"] == "HEAD"

    source.remove(baseline)
    assert not (tmp_path / "baseline-source").exists()


def test_this_code_is_the_installed_package(tmp_path: Path) -> None:
    imported = source.imported_from(source.THIS)
    assert imported.is_relative_to(source.REPOSITORY / "src")
    assert source.THIS.environment() == {}


def test_the_baseline_goes_first_on_an_existing_path(tmp_path: Path) -> None:
    baseline = source.Source("baseline", tmp_path / "src")
    environment = baseline.environment({"PYTHONPATH": "/elsewhere"})
    assert environment == {"PYTHONPATH": f"{tmp_path / 'src'}{os.pathsep}/elsewhere"}


def test_an_unknown_commit_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(source.SourceError):
        source.export("no-such-commit-anywhere", tmp_path)
    assert not (tmp_path / "src").exists()


def test_a_process_runs_the_baseline_only_with_its_tree_first_on_the_path(tmp_path: Path) -> None:
    baseline = source.Source("baseline", tmp_path / "src")
    environment = os.environ | baseline.environment()
    started = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], env=environment
    )
    plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert baseline.runs_in(started.pid)
        assert not baseline.runs_in(plain.pid)
        assert source.THIS.runs_in(plain.pid)
    finally:
        started.kill()
        plain.kill()
        started.wait()
        plain.wait()
