"""The image every deploy test runs: built once per session by deploy/build-image.sh.

In CI the build script installs what is missing, and a build that fails fails the run; elsewhere
a missing podman skips these tests with a loud reason. The build is slow the first time (a base
image from Debian's packages, then the wheels).
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.notifications.test_mailer import smtp_sink  # noqa: F401 (the mail sink's fixture)

REPOSITORY = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPOSITORY / "deploy" / "build-image.sh"
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(REPOSITORY / "deploy" / "containers.conf")}
BUILD_SECONDS = 15 * 60


def podman(
    *arguments: str, timeout: float = 120, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        env=PODMAN_ENV,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def image() -> str:
    """The image, built once per session; in CI the script installs a missing podman with
    apt-get, and its failure fails the run."""
    if shutil.which("podman") is None and not os.environ.get("CI"):
        pytest.skip(
            "SKIPPED, NOT TESTED: podman is not installed "
            "(apt-get install podman buildah runc catatonit debootstrap)"
        )
    built = subprocess.run(
        [str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=BUILD_SECONDS
    )
    print(built.stderr, end="")
    if built.returncode != 0:
        pytest.fail(f"{BUILD_SCRIPT} failed:\n{built.stderr[-4000:]}")
    return built.stdout.strip().splitlines()[-1]
