"""`bazaar up` reports an instance that cannot start as soon as supervisord sees it keep
exiting, with the end of its log, instead of after the whole readiness wait; and leaves
nothing running."""

import re
import time

from bazaar.runtime.cluster.supervisor import is_alive
from bazaar.runtime.cluster.topology import free_port
from bazaar.runtime.cluster.up import READY_TIMEOUT
from tests.up.running import prepared, start


def test_an_instance_that_cannot_start_fails_up_at_once_with_its_log() -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: every process refuses
    with prepared({"BAZAAR_REDIS_URL": dead_redis}) as up:
        began = time.monotonic()
        started = start(up, "identity=1,catalog=1,orders=1,payments=1,notifications=1", 0, 1)
        took = time.monotonic() - began
        output = started.stdout + started.stderr
        assert started.returncode != 0, output
        assert "does not start" in output and re.search(r"exited \d+ times", output), output
        assert "REDIS_URL" in output  # the process's own words, from its log
        assert took < READY_TIMEOUT, f"{took:.0f} s"
        supervisord = up.up_folder / "supervisord.pid"
        assert not supervisord.exists() or not is_alive(int(supervisord.read_text()))
        assert not (up.up_folder / "run.json").exists()
