"""`bazaar chaos --quick`, as CI runs it: a fresh `bazaar up` with fault proxies, the quick
scenarios under a checkout stream, and every promise kept in each (checked in the databases
and the mail sink by the command itself; here again from its results)."""

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.scenarios import SCENARIOS
from tests.up.running import BAZAAR, require_packages

ZERO = (
    "lost",
    "double_charges",
    "kept_money",
    "stock_drift",
    "duplicate_notifications",
    "missing_notifications",
    "missing_emails",
    "missing_webhooks",
    "duplicate_webhooks",
    "dead_letters",
    "outside_contract",
)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A folder PostgreSQL (running as `postgres`) can enter, unlike pytest's own."""
    folder = Path(tempfile.mkdtemp(prefix="bazaar-test-chaos-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_quick_scenarios_lose_nothing(data_dir: Path) -> None:
    require_packages()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BAZAAR_")}
    done = subprocess.run(
        [BAZAAR, "chaos", "--quick"],
        env={**environ, "BAZAAR_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(done.stdout, done.stderr[-5000:])
    runs = list((data_dir / "chaos").iterdir())
    assert len(runs) == 1
    results = json.loads((runs[0] / "results.json").read_text())["scenarios"]
    assert [r["name"] for r in results] == [s.name for s in SCENARIOS if s.quick]
    for result in results:
        assert result["accepted"] > 10, result["name"]
        assert result["confirmed"] + result["cancelled"] == result["accepted"]
        assert {key: result[key] for key in ZERO} == dict.fromkeys(ZERO, 0), result["name"]
        assert result["violations"] == [], result["name"]
        assert 0 <= result["recovery"] < 30, result["name"]
        assert (runs[0] / f"timeline-{result['name']}.png").stat().st_size > 10_000
    assert "| orders-instance-killed |" in (runs[0] / "report.md").read_text()
    assert done.returncode == 0
    assert not (runs[0] / "data").exists()  # the servers' data goes; their logs stay
    assert (runs[0] / "logs" / "haproxy.log").exists()
