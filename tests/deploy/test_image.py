"""The OCI image (deploy/Containerfile), built by deploy/build-image.sh and run with podman as
a cluster runs it: non-root, read-only root file system, data on a tmpfs.

In CI the build script installs what is missing, and a build that fails fails the run; elsewhere
a missing podman skips these tests with a loud reason. The build is slow the first time (a base
image from Debian's packages, then the wheels): it runs once per session.
"""

import time
import uuid

import httpx

from tests.deploy.conftest import podman
from tests.plugin import FAST_ENV
from tests.replication import free_port

SIZE_BOUND_MB = 400
"""The image is about 290 MB: a slim Python base (~130 MB) and Bazaar's venv (~165 MB)."""
DATA_DIR = "/var/lib/bazaar"


def test_the_entrypoint_is_the_bazaar_command(image: str) -> None:
    done = podman("run", "--rm", image, "--help")
    assert done.returncode == 0, done.stderr
    assert "serve" in done.stdout and "worker" in done.stdout and "migrate" in done.stdout


def test_the_image_runs_as_a_non_root_user(image: str) -> None:
    user = podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert user.split(":")[0] not in ("", "0", "root"), user
    done = podman("run", "--rm", "--entrypoint", "id", image, "-u")
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) != 0


def test_the_final_image_holds_no_compiler(image: str) -> None:
    done = podman(
        "run", "--rm", "--entrypoint", "sh", image, "-c",
        "for tool in gcc cc c++ g++ clang make; do command -v $tool; done; true",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_the_image_is_smaller_than_its_bound(image: str) -> None:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout)
    print(f"{image}: {size / 1e6:.0f} MB")
    assert size < SIZE_BOUND_MB * 1_000_000, f"{size / 1e6:.0f} MB"


def test_serves_with_a_read_only_root_and_its_data_on_a_tmpfs(image: str) -> None:
    port = free_port()
    name = f"bazaar-test-{uuid.uuid4().hex[:8]}"
    environment = [f"--env={key}={value}" for key, value in FAST_ENV.items()]
    started = podman(
        "run", "--detach", "--name", name,
        # as Kubernetes runs it: no tmpfs on /tmp either, only the data folder is writable
        "--read-only", "--read-only-tmpfs=false", "--tmpfs", DATA_DIR,
        "--publish", f"127.0.0.1:{port}:8000", *environment,
        image, "dev", "--host", "0.0.0.0", "--port", "8000",
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr
        base_url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base_url, timeout=10) as client:
            assert _healthy(client), podman("logs", name).stderr[-4000:]
            registered = client.post(
                "/v1/auth/register",
                json={"email": "ada@example.com", "password": "correct horse", "name": "Ada"},
            )
            assert registered.status_code == 201, registered.text
        written = podman("exec", name, "ls", DATA_DIR).stdout.split()
        assert "identity.db" in written
        root_written = podman("exec", name, "touch", "/opt/bazaar/x")
        assert root_written.returncode != 0 and "Read-only" in root_written.stderr
    finally:
        podman("rm", "--force", "--time", "5", name)


def _healthy(client: httpx.Client, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if client.get("/healthz").status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    return False
