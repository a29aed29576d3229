"""`bazaar up` reports an instance that cannot start as soon as supervisord sees it keep
exiting, with the end of its log, instead of after the whole readiness wait; and leaves
nothing running."""

import re

from bazaar.runtime.cluster.supervisor import is_alive
from bazaar.runtime.cluster.topology import free_port
from bazaar.runtime.cluster.up import READY_TIMEOUT
from tests.up.running import prepared, start_watched


def test_an_instance_that_cannot_start_fails_up_at_once_with_its_log() -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: every process refuses
    with prepared({"BAZAAR_REDIS_URL": dead_redis}) as up:
        returncode, lines = start_watched(
            up, "identity=1,catalog=1,orders=1,payments=1,notifications=1", 0, 1
        )
        output = "\n".join(line for _, line in lines)
        assert returncode != 0, output
        assert "does not start" in output and re.search(r"exited \d+ times", output), output
        assert "REDIS_URL" in output  # the process's own words, from its log
        # The readiness wait begins once the last service's processes are started; the
        # time before it (servers, migrations) is not the wait this test is about.
        waiting = [at for at, line in lines if line.startswith("notifications:")]
        assert waiting, output
        waited = lines[-1][0] - waiting[0]
        print(f"up failed {waited:.1f} s into the readiness wait")
        assert waited < READY_TIMEOUT * 3 / 4, f"{waited:.0f} s"  # the timeout says otherwise
        supervisord = up.up_folder / "supervisord.pid"
        assert not supervisord.exists() or not is_alive(int(supervisord.read_text()))
        assert not (up.up_folder / "run.json").exists()
