"""Prometheus in `bazaar up`, and the rules it shares with Kubernetes.

`up` runs Debian's `prometheus` under supervisord on a port of its own, with its data under
`<up folder>/prometheus/` (short retention) and everything on its command line: no file of
`/etc` is read and the machine's own Prometheus, if any, is never touched. It scrapes every
process every 2 s through a target file (`file_sd`) that `up` writes and `bazaar scale` keeps
current, each target labelled with its `service`, `instance` (the process's name) and `kind`
(serve, worker or haproxy); Prometheus reads the file again by itself when it changes.

`prometheus-rules.yml`, beside this module, holds the recording and alert rules. Run as
`python -m bazaar.runtime.cluster.prometheus`, this module prints them as the PrometheusRule
of deploy/k8s/components/prometheus-operator/prometheus-rule.yaml (checked in, and checked to
be what this prints).
"""

import json
import os
import shutil
import subprocess
from collections.abc import Collection, Iterable
from pathlib import Path

from bazaar.runtime.cluster.record import RunProcess
from bazaar.runtime.cluster.supervisor import Program

RULES = Path(__file__).with_name("prometheus-rules.yml")
SCRAPE_INTERVAL = "2s"
RETENTION = "6h"
"""Long enough for the slowest burn-rate window."""
JOB = "bazaar"
"""Every Bazaar target's job, here and on Kubernetes (the ServiceMonitor's jobLabel)."""


class PrometheusError(RuntimeError):
    """Prometheus is missing or refuses its configuration."""


class Files:
    """What Prometheus keeps under the `up` folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def config(self) -> Path:
        return self.root / "prometheus.yml"

    @property
    def targets(self) -> Path:
        """The file_sd target file: every process in service."""
        return self.root / "targets.json"

    @property
    def data(self) -> Path:
        return self.root / "data"


def binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise PrometheusError("prometheus is not installed (Debian package `prometheus`)")
    return found


def render_config(files: Files) -> str:
    """The configuration (JSON, which Prometheus reads as YAML): one job over the target file,
    the rules of `RULES`."""
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "scrape_timeout": SCRAPE_INTERVAL,
                "file_sd_configs": [{"files": [str(files.targets)], "refresh_interval": "5s"}],
            }
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def target_groups(
    processes: Iterable[RunProcess], stats_port: int, leave_out: Collection[str] = ()
) -> list[dict[str, object]]:
    """A target group per process (those named in `leave_out` excepted, the instances
    `scale` stopped), HAProxy's exporter on its stats port last."""
    groups: list[dict[str, object]] = [
        {
            "targets": [f"127.0.0.1:{p.port}"],
            "labels": {"service": p.service, "instance": p.name, "kind": p.kind},
        }
        for p in processes
        if p.name not in leave_out
    ]
    groups.append(
        {
            "targets": [f"127.0.0.1:{stats_port}"],
            "labels": {"service": "haproxy", "instance": "haproxy", "kind": "haproxy"},
        }
    )
    return groups


def write_targets(files: Files, groups: list[dict[str, object]]) -> None:
    """Replace the target file at once (a rename), so Prometheus never reads half of it."""
    files.root.mkdir(parents=True, exist_ok=True)
    partial = files.targets.with_suffix(".json.partial")
    partial.write_text(json.dumps(groups, indent=2) + "\n")
    os.replace(partial, files.targets)


def prepare(files: Files, groups: list[dict[str, object]]) -> None:
    """Write the configuration and the target file, and have `promtool` check both with the
    rules (a refused file fails `up` before anything starts)."""
    files.data.mkdir(parents=True, exist_ok=True)
    files.config.write_text(render_config(files))
    write_targets(files, groups)
    promtool = shutil.which("promtool") or "promtool"
    try:
        done = subprocess.run(
            [promtool, "check", "config", str(files.config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError as error:
        raise PrometheusError(f"promtool: {error} (Debian package `prometheus`)") from None
    if done.returncode != 0:
        raise PrometheusError(f"promtool refuses {files.config}:\n{done.stdout}{done.stderr}")


def program(files: Files, port: int) -> Program:
    """Prometheus as supervisord runs it: loopback only, its own data and port, every path on
    its command line (the Debian package's defaults name /etc and /var/lib)."""
    command = [
        binary(),
        f"--config.file={files.config}",
        f"--storage.tsdb.path={files.data}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.console.templates={files.root / 'consoles'}",
        f"--web.console.libraries={files.root / 'console_libraries'}",
        "--log.format=json",
    ]
    return Program("prometheus", command, "monitoring", priority=300)


def prometheus_rule(rules: str) -> str:
    """The PrometheusRule of the Prometheus Operator holding `rules` (a rule file's text):
    its `groups` under `spec`, every line indented as it is, comments included."""
    header = [
        "# Generated from src/bazaar/runtime/cluster/prometheus-rules.yml by",
        "# `python -m bazaar.runtime.cluster.prometheus`: edit that file, not this one.",
        "apiVersion: monitoring.coreos.com/v1",
        "kind: PrometheusRule",
        "metadata:",
        "  name: bazaar",
        "  labels:",
        "    app.kubernetes.io/part-of: bazaar",
        "    # kube-prometheus-stack's Prometheus selects rules by its release label",
        "    release: kube-prometheus-stack",
        "spec:",
    ]
    body = [f"  {line}" if line.strip() else "" for line in rules.splitlines()]
    return "\n".join([*header, *body]) + "\n"


if __name__ == "__main__":
    print(prometheus_rule(RULES.read_text()), end="")
