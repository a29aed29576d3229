"""The load generators, run as programs: wrk for raw request rates (one C thread drives tens
of thousands of requests a second with Lua choosing each request) and Locust, headless, for
the journeys of signed-in customers (sign up, order, poll until settled), which wrk's
request-at-a-time Lua cannot follow.

Each run returns a `Measurement` with the generator's own CPU (the rusage of the child it
was), so a report shows when the generator, not the server, was the limit.
"""

import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.results import Latency, Measurement

WORKLOADS = Path(__file__).parent / "workloads"
LOCUST_SLACK = 30
"""Seconds Locust may take past its run time (stopping users, writing its files)."""


class LoadError(RuntimeError):
    """The load generator is missing or failed."""


@dataclass(frozen=True)
class Catalog:
    """What the catalog holds for the workloads: files of ids, one per line."""

    products: Path
    stocked: Path
    categories: Path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(
    url: str,
    mix: str,
    catalog: Catalog,
    seconds: float,
    connections: int = 64,
    rate: float = 0.0,
) -> Measurement:
    """`mix` is `product` or `browse` (workloads/catalog.lua); `rate` 0 is as fast as the
    server answers, else about that many requests a second (Poisson arrivals)."""
    arguments = [mix, str(catalog.products), str(catalog.categories), str(rate), str(connections)]
    return _wrk(url, "catalog.lua", arguments, mix, seconds, connections, rate)


def wrk_signed_in(
    url: str, mix: str, callers: Path, seconds: float, connections: int = 64
) -> Measurement:
    """`mix` is `order-read`, `cart-read`, `notifications-read` or `product-create`
    (workloads/signed_in.lua), as fast as the server answers; `callers` is the file of
    signed-in callers (and their orders) that the requests take in turn (bench/customers.py)."""
    run = os.urandom(4).hex().upper()  # the new products' SKUs: unique across runs
    return _wrk(url, "signed_in.lua", [mix, str(callers), run], mix, seconds, connections)


def _wrk(
    url: str,
    script: str,
    arguments: list[str],
    workload: str,
    seconds: float,
    connections: int,
    rate: float = 0.0,
) -> Measurement:
    if shutil.which("wrk") is None:
        raise LoadError("wrk is not installed (Debian package `wrk`)")
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    command += ["--timeout", "5s", "-s", str(WORKLOADS / script), url, "--", *arguments]
    before = _children_cpu()
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    cpu = _children_cpu() - before
    summary = _last_json_line(done.stdout)
    if done.returncode != 0 or summary is None:
        raise LoadError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    elapsed = summary["micros"] / 1e6
    return Measurement(
        workload=workload,
        tool="wrk",
        seconds=round(elapsed, 2),
        requests=summary["requests"],
        rps=round(summary["requests"] / elapsed, 1) if elapsed else 0.0,
        errors=summary["errors"],
        latency=Latency(*(round(summary[k] / 1000, 2) for k in ("p50", "p95", "p99", "max"))),
        offered_rps=rate or None,
        connections=connections,
        loadgen_cpu=round(cpu / elapsed, 2) if elapsed else 0.0,
    )


def _last_json_line(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return None


def locust(
    url: str,
    journey: str,
    catalog: Catalog,
    seconds: float,
    users: int,
    settle_timeout: float = 10.0,
    rate: float = 0.0,
    customers: Path | None = None,
    failures: Path | None = None,
    poll_seconds: float | None = None,
    pause: float = 0.0,
) -> Measurement:
    """`journey` is `checkout`, `mixed` or `settle_idle` (workloads/<journey>.py), with `users`
    at once; for checkout, `rate` (orders a second, all users together) holds the load below
    the peak. `customers` is a file of signed-in customers (bench/customers.py); Locust's list
    of failures, if any, is kept as `failures`. `poll_seconds` is how often an order is polled
    until it settles (workloads/shopper.py's default when None); `pause`, settle_idle's rest
    between two orders."""
    executable = Path(sys.executable).parent / "locust"
    if not executable.exists():
        raise LoadError("Locust is not installed: pip install -e '.[bench]'")
    with tempfile.TemporaryDirectory(prefix="bazaar-locust-") as folder:
        prefix = Path(folder) / "run"
        command = [
            str(executable),
            "-f",
            str(WORKLOADS / f"{journey}.py"),
            "--headless",
            "--host",
            url,
            "-u",
            str(users),
            "-r",
            str(max(users, 1)),
            "-t",
            f"{max(1, round(seconds))}s",
            "--stop-timeout",
            str(int(settle_timeout) + 1),
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
            "--exit-code-on-error",
            "0",
        ]
        environment = (
            os.environ
            | {
                "BENCH_PRODUCTS": str(catalog.products),
                "BENCH_STOCKED": str(catalog.stocked),
                "BENCH_CATEGORIES": str(catalog.categories),
                "BENCH_SETTLE_TIMEOUT": str(settle_timeout),
                "BENCH_SETTLE_FILE": str(Path(folder) / "settle.json"),
                "BENCH_USER_RATE": str(rate / users) if rate else "",
                "BENCH_CUSTOMERS": str(customers or ""),
                "BENCH_PAUSE_SECONDS": str(pause),
            }
            | ({"BENCH_POLL_SECONDS": str(poll_seconds)} if poll_seconds else {})
        )
        before = _children_cpu()
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=environment,
            timeout=seconds + settle_timeout + LOCUST_SLACK,
        )
        cpu = _children_cpu() - before
        stats = prefix.with_name("run_stats.csv")
        if done.returncode != 0 or not stats.exists():
            raise LoadError(f"Locust failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        rows = list(csv.DictReader(stats.open()))
        failed = prefix.with_name("run_failures.csv")
        if failures is not None and failed.exists() and len(failed.read_text().splitlines()) > 1:
            shutil.copyfile(failed, failures)
        settle_file = Path(folder) / "settle.json"
        settle = json.loads(settle_file.read_text()) if settle_file.exists() else None
    if settle is None:
        raise LoadError(f"Locust wrote no settle times: {done.stderr.strip()[-2000:]}")
    found = _journey_measurement(journey.replace("_", "-"), rows, settle, seconds, users, cpu)
    found.offered_rps = rate or None
    return found


def _journey_measurement(
    journey: str, rows: list[dict], settle: dict, seconds: float, users: int, cpu: float
) -> Measurement:
    overall = next(r for r in rows if r["Name"] == "Aggregated")
    orders = next((r for r in rows if r["Name"] == "POST /v1/orders"), None)
    total = int(overall["Request Count"])
    times = sorted(settle["settled"])
    return Measurement(
        workload=journey,
        tool="locust",
        seconds=seconds,
        requests=total,
        rps=round(total / seconds, 1),
        errors=int(overall["Failure Count"]),
        latency=_percentiles(overall),
        connections=users,
        orders_per_s=(
            round((int(orders["Request Count"]) - int(orders["Failure Count"])) / seconds, 2)
            if orders
            else None
        ),
        settled=len(times),
        unsettled=len(settle["unsettled"]),
        settle_ms=_quantiles_ms(times) if times else None,
        loadgen_cpu=round(cpu / seconds, 2),
    )


def _percentiles(row: dict) -> Latency:
    def number(key: str) -> float:
        value = row.get(key) or "0"
        return 0.0 if value == "N/A" else float(value)

    return Latency(number("50%"), number("95%"), number("99%"), number("100%"))


def _quantiles_ms(ordered: list[float]) -> Latency:
    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, 1)

    return Latency(at(0.5), at(0.95), at(0.99), round(ordered[-1] * 1000, 1))
