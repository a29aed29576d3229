"""The recording and alert rules of `bazaar up`'s Prometheus (and of the PrometheusRule):
`promtool check rules` accepts them, `promtool test rules` runs the unit tests of
tests/up/prometheus/ (series in, alerts and recorded values out), each alert is tested
firing and not firing and carries what an operator needs; the configuration `up` writes
passes `promtool check config`.

Needs Debian's `prometheus` (promtool): in CI a missing one fails the run.
"""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from bazaar.runtime.cluster import prometheus
from bazaar.runtime.cluster.record import RunProcess
from tests.scaled import _unavailable

UNIT_TESTS = sorted((Path(__file__).parent / "prometheus").glob("*.yml"))


def _promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        _unavailable("promtool is not installed (Debian package `prometheus`)")
    return subprocess.run([str(promtool), *arguments], capture_output=True, text=True, timeout=120)


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(prometheus.RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_rules() -> None:
    checked = _promtool("check", "rules", str(prometheus.RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_every_unit_test_of_the_rules_passes() -> None:
    assert len(UNIT_TESTS) >= 4
    tested = _promtool("test", "rules", *map(str, UNIT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(UNIT_TESTS), tested.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {alert["alert"] for alert in _alerts()}
    assert names - firing == set(), "never tested firing"
    assert names - quiet == set(), "never tested quiet"


def test_every_alert_says_how_bad_what_happened_and_what_to_do() -> None:
    alerts = _alerts()
    assert len(alerts) >= 14
    for alert in alerts:
        assert alert["labels"]["severity"] in ("critical", "warning"), alert["alert"]
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook"}, alert["alert"]
        assert "\n" not in annotations["runbook"], alert["alert"]


def test_the_configuration_up_writes_passes_promtool(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        _unavailable("promtool is not installed (Debian package `prometheus`)")
    files = prometheus.Files(tmp_path / "prometheus")
    processes = [
        RunProcess("catalog-0", "catalog", "serve", 41001),
        RunProcess("catalog-1", "catalog", "serve", 41002),
        RunProcess("catalog-worker", "catalog", "worker", 41003),
    ]
    prometheus.prepare(files, prometheus.target_groups(processes, 8404, {"catalog-1"}))
    config = json.loads(files.config.read_text())
    assert config["rule_files"] == [str(prometheus.RULES)]
    assert config["global"]["scrape_interval"] == "2s"
    targets = json.loads(files.targets.read_text())
    assert [group["labels"] for group in targets] == [
        {"service": "catalog", "instance": "catalog-0", "kind": "serve"},
        {"service": "catalog", "instance": "catalog-worker", "kind": "worker"},
        {"service": "haproxy", "instance": "haproxy", "kind": "haproxy"},
    ]
    assert targets[-1]["targets"] == ["127.0.0.1:8404"]
    assert not list(files.root.glob("*.partial"))
