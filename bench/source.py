"""The code a system under test runs: this checkout's (the installed package, working tree
and all), or a commit's, exported from git into the run's folder and put first on the
`PYTHONPATH` of every process started for it.

The commit's tree runs with this run's virtualenv (the same interpreter, the same third-party
packages): only Bazaar's own code and migrations, `src/`, come from the commit. `git archive`
writes the tree without touching the repository (no worktree to register or prune, nothing
left behind if the run is killed).
"""

import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


class SourceError(RuntimeError):
    """The commit cannot be found, exported or imported."""


@dataclass(frozen=True)
class Source:
    label: str
    """`this` (the code of the checkout) or `baseline`."""
    src: Path | None = None
    """The exported `src/` folder; None for the installed package."""
    commit: str | None = None
    """The full commit id, for an exported tree."""
    ref: str | None = None
    """The commit as it was asked for (`b01d6e7`, `main~3`)."""
    subject: str | None = None

    def environment(self, inherited: Mapping[str, str] | None = None) -> dict[str, str]:
        """What a process started for this code needs in its environment."""
        if self.src is None:
            return {}
        before = (os.environ if inherited is None else inherited).get("PYTHONPATH")
        return {"PYTHONPATH": os.pathsep.join(filter(None, [str(self.src), before]))}

    def runs_in(self, pid: int) -> bool:
        """Whether process `pid` runs this code: an exported tree's processes have it first
        on their path (the installed package's are not checked: it is what they import)."""
        if self.src is None:
            return True
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return False
        path = next((v[11:].decode() for v in environ if v.startswith(b"PYTHONPATH=")), "")
        return path.split(os.pathsep)[0] == str(self.src)

    def describe(self) -> dict[str, str | None]:
        """What results.json records of it."""
        return {"ref": self.ref, "commit": self.commit, "subject": self.subject}


THIS = Source("this")


def _git(*arguments: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPOSITORY), *arguments], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SourceError(f"git {' '.join(arguments)}: {done.stderr.strip() or done.stdout}")
    return done.stdout.strip()


def resolve(ref: str) -> str:
    """The full id of the commit `ref` names (raises SourceError if none)."""
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except SourceError:
        raise SourceError(f"{ref!r} names no commit of {REPOSITORY}") from None


def export(ref: str, folder: Path, label: str = "baseline") -> Source:
    """`ref`'s `src/` written into `folder`/src, checked to be what Python imports there."""
    commit = resolve(ref)
    subject = _git("log", "-1", "--format=%s", commit)
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(
        ["git", "-C", str(REPOSITORY), "archive", "--format=tar", commit, "src"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert archive.stdout is not None
    with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
        tar.extractall(folder, filter="data")
    _, error = archive.communicate()
    if archive.returncode != 0:
        raise SourceError(f"git archive {commit}: {error.decode().strip()}")
    source = Source(label, folder / "src", commit, ref, subject)
    imported = imported_from(source)
    if not imported.is_relative_to(folder):
        raise SourceError(f"with {source.src} first on the path, bazaar came from {imported}")
    return source


def imported_from(source: Source) -> Path:
    """The file `import bazaar` loads in a process started for `source`."""
    done = subprocess.run(
        [sys.executable, "-c", "import bazaar; print(bazaar.__file__)"],
        env=os.environ | source.environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SourceError(f"import bazaar failed for {source.label}: {done.stderr[-2000:]}")
    return Path(done.stdout.strip())


def remove(source: Source) -> None:
    """Delete an exported tree (the installed package's is left alone)."""
    if source.src is not None:
        shutil.rmtree(source.src.parent, ignore_errors=True)
