"""A chaos run: a fresh `bazaar up --fault-proxies` in a folder of the run's own, customers
and an admin, then each scenario in turn: a stream of checkouts, the fault, the recovery, the
stream stopped, every accepted order waited for, the promises checked; `down` at the end.
"""

import asyncio
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bazaar.runtime.cluster.folder import Folder, bazaar_command, child_environment
from bazaar.runtime.cluster.status import running_environment
from bazaar.runtime.cluster.supervisor import Supervisor
from bazaar.runtime.cluster.topology import free_port
from bazaar.runtime.config import Settings
from bazaar.runtime.embedded import Runtime
from chaos import invariants
from chaos.kit import FaultKit
from chaos.receiver import Receiver
from chaos.scenarios import Scenario
from chaos.shop import (
    NO_ANSWER,
    PASSWORD,
    TIMED_OUT,
    Answer,
    Customer,
    Stream,
    Timeline,
    create_product,
    login,
    sign_up,
)

Say = Callable[[str], None]
SETTLE_TIMEOUT = 120.0
HEALTHY_TIMEOUT = 120.0
INSTANCES = "catalog=2,orders=2,identity=1,payments=1,notifications=1"
STOCK = 10_000
TIMELINE_BIN = 0.5
"""Seconds per point of a timeline."""
SCARCE_STOCK = 6
"""One product runs out during each scenario, so compensation (a cancelled reservation's
units back, no charge) is exercised under the fault as well."""


@dataclass(frozen=True)
class Pace:
    customers: int
    warmup: float
    """Seconds of the stream before the fault."""
    after: float
    """Seconds of the stream after the fault ended."""


QUICK = Pace(customers=6, warmup=3.0, after=6.0)
FULL = Pace(customers=12, warmup=6.0, after=12.0)


class ChaosError(RuntimeError):
    """The topology would not start, or did not come back healthy between scenarios."""


@dataclass(kw_only=True)
class Result(invariants.Counts):
    name: str
    fault: str
    accepted: int
    confirmed: int
    cancelled: int
    answers: dict[str, int]
    """Client answers by status, every operation together: `closed` when the connection
    closed without an answer, `timeout` when none came in time."""
    outside_contract: int
    """Answers the contract does not allow a client under a fault: anything but 2xx, 409,
    429 or 503 with Retry-After; never a timeout; a connection closed without an answer only
    when the process answering it died (scenarios marked `unanswered`)."""
    error_window: float
    """Seconds from the first to the last answer that was not a success."""
    recovery: float
    """Seconds from the fault's start until checkouts succeed again and keep doing so."""
    settle: float
    """Seconds from the stream's end until every accepted order settled and was emailed, and
    every webhook delivered."""
    violations: list[str] = field(default_factory=list)
    timeline: list[tuple[float, str, int, int]] = field(default_factory=list)
    """Answers per `TIMELINE_BIN` seconds: (the bin's start, operation, status, how many)."""
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.violations and self.accepted > 0


@dataclass
class Shop:
    """The topology under test: `bazaar up` in `folder`, reached at `base`."""

    folder: Path
    port: int = field(default_factory=free_port)
    admin: dict[str, str] = field(default_factory=dict)
    customers: list[Customer] = field(default_factory=list)
    receiver: Receiver = field(default_factory=Receiver)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def kit(self) -> FaultKit:
        return FaultKit.of(self.data_dir)

    def environment(self) -> dict[str, str]:
        return child_environment(
            {
                "BAZAAR_DATA_DIR": str(self.data_dir),
                "BAZAAR_LOG_LEVEL": "warning",
                "BAZAAR_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver listens on loopback
            }
        )

    def bazaar(
        self, *arguments: str, environ: dict[str, str] | None = None, stdin: str | None = None
    ) -> str:
        done = subprocess.run(
            [*bazaar_command(), *arguments],
            env=environ or self.environment(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise ChaosError(f"bazaar {' '.join(arguments[:2])}: {done.stderr[-3000:]}")
        return done.stdout

    def start(self, customers: int) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o755)  # PostgreSQL runs as `postgres` under it
        self.data_dir.chmod(0o755)
        stats = str(free_port())
        self.bazaar(
            "up", "--detach", "--fault-proxies", "--instances", INSTANCES,
            "--port", str(self.port), "--stats-port", stats,
        )  # fmt: skip
        settings = {**self.environment(), **running_environment(Folder(self.data_dir))}
        email = f"chaos-admin-{uuid.uuid4().hex[:8]}@example.com"
        self.bazaar("admin", "create", "--email", email, environ=settings, stdin=PASSWORD + "\n")
        self.receiver.start()
        with httpx.Client(base_url=self.base, timeout=30) as client:
            self.admin = login(client, email)
            self.customers = [sign_up(client, f"Shopper{n}") for n in range(customers)]
            hook = {"url": self.receiver.url, "events": ["order.confirmed", "order.cancelled"]}
            client.post("/v1/webhooks", json=hook, headers=self.admin).raise_for_status()

    def stop(self) -> None:
        self.receiver.stop()
        subprocess.run(
            [*bazaar_command(), "down"],
            env=self.environment(),
            capture_output=True,
            timeout=300,
        )

    def wait_healthy(self, timeout: float = HEALTHY_TIMEOUT) -> None:
        """Until every program runs, the front door is ready and a read succeeds."""
        supervisor = Supervisor(Folder(self.data_dir).layout, timeout=10)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = all(p.state == "RUNNING" for p in supervisor.programs())
            ready = running and _status(f"{self.base}/readyz") == 200
            if ready and _status(f"{self.base}/v1/products?limit=1") == 200:
                return
            time.sleep(0.5)
        states = ", ".join(f"{p.name} {p.state}" for p in supervisor.programs())
        raise ChaosError(f"the topology is not healthy after {timeout:.0f} s: {states}")

    def products(self) -> dict[str, int]:
        """Products of a scenario's own: their initial stock by id."""
        with httpx.Client(base_url=self.base, timeout=30) as client:
            stocks = [STOCK, STOCK, STOCK, SCARCE_STOCK]
            return {create_product(client, self.admin, s, 1000 + 250 * n): s for n, s in
                    enumerate(stocks)}  # fmt: skip


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=3).status_code
    except httpx.HTTPError:
        return NO_ANSWER


@contextmanager
def started(folder: Path, pace: Pace, say: Say) -> Iterator[Shop]:
    shop = Shop(folder)
    say("starting bazaar up --fault-proxies")
    try:
        shop.start(pace.customers)
        yield shop
    finally:
        say("bazaar down")
        shop.stop()
        logs = Folder(shop.data_dir).layout.logs
        if logs.exists():  # kept for a look after the run; the servers' data is not
            shutil.move(logs, folder / "logs")
        shutil.rmtree(shop.data_dir, ignore_errors=True)


def run_scenario(shop: Shop, scenario: Scenario, pace: Pace, say: Say) -> Result:
    shop.wait_healthy()
    initial = shop.products()
    timeline = Timeline()
    with Stream(shop.base, shop.customers, list(initial), timeline) as stream:
        time.sleep(pace.warmup)
        say(f"{scenario.name}: {scenario.fault}")
        timeline.mark("fault")
        scenario.inject(shop.kit)
        timeline.mark("fault over")
        time.sleep(pace.after)
        say(f"{scenario.name}: stopping the stream")
    timeline.mark("stream stopped")
    accepted = stream.accepted()
    say(f"{scenario.name}: waiting for {len(accepted)} orders to settle")
    findings, settle = _settled(shop, accepted, initial)
    result = _result(scenario, timeline, accepted, findings, settle)
    result.violations += stream.failures
    if result.outside_contract and stream.unanswered:
        result.violations.append(f"no answer, by client error: {dict(stream.unanswered)}")
    return result


def _settled(
    shop: Shop, accepted: set[str], initial: dict[str, int]
) -> tuple[invariants.Findings, float]:
    """Wait (bounded) until every accepted order settled and its emails went, then check."""
    settings = Settings.from_env(running_environment(Folder(shop.data_dir)))
    mail = Folder(shop.data_dir).mail

    async def wait_and_check() -> tuple[invariants.Findings, float]:
        runtime = Runtime(settings)
        began = time.monotonic()
        try:
            while time.monotonic() - began < SETTLE_TIMEOUT:
                standing = await invariants.settlement(runtime, accepted)
                waiting = standing.unsettled or await invariants.emails_unsent(runtime, accepted)
                if not waiting and not await invariants.webhooks_pending(runtime):
                    break
                await asyncio.sleep(0.5)
            settle = time.monotonic() - began
            received = shop.receiver.counts()
            return await invariants.check(runtime, accepted, initial, mail, received), settle
        finally:
            await runtime.stop()

    return asyncio.run(wait_and_check())


def _result(
    scenario: Scenario,
    timeline: Timeline,
    accepted: set[str],
    findings: invariants.Findings,
    settle: float,
) -> Result:
    answers = timeline.answers
    fault = timeline.marks["fault"]
    names = {NO_ANSWER: "closed", TIMED_OUT: "timeout"}
    by_status = Counter(names.get(a.status, str(a.status)) for a in answers)
    outside = [a for a in answers if not _allowed(a.status, a.retry_after, scenario)]
    errors = [a for a in answers if not 200 <= a.status < 300 and a.status != 409]
    window = errors[-1].at - errors[0].at if errors else 0.0
    last_error = max((a.at for a in errors if a.at >= fault), default=fault)
    back = next(
        (
            a.at
            for a in answers
            if a.operation == "checkout" and a.status == 202 and a.at > last_error
        ),
        timeline.marks["stream stopped"],
    )
    violations = list(findings.violations)
    if outside:
        kinds = Counter(f"{a.operation} {a.status}" for a in outside)
        violations.append(f"answers outside the contract: {dict(kinds)}")
    return Result(
        **findings.counts(),
        name=scenario.name,
        fault=scenario.fault,
        accepted=len(accepted),
        confirmed=findings.statuses["confirmed"],
        cancelled=findings.statuses["cancelled"],
        answers=dict(sorted(by_status.items())),
        outside_contract=len(outside),
        error_window=round(window, 2),
        recovery=round(back - fault, 2),
        settle=round(settle, 2),
        violations=violations,
        timeline=binned(answers),
        marks={name: round(at, 3) for name, at in timeline.marks.items()},
    )


def binned(answers: list[Answer]) -> list[tuple[float, str, int, int]]:
    """How many answers of each operation and status came in each `TIMELINE_BIN`."""
    counts = Counter((int(a.at / TIMELINE_BIN), a.operation, a.status) for a in answers)
    return [
        (slot * TIMELINE_BIN, operation, status, n)
        for (slot, operation, status), n in sorted(counts.items())
    ]


def _allowed(status: int, retry_after: bool, scenario: Scenario) -> bool:
    if 200 <= status < 300 or status == 409:
        return True
    if status in (429, 503):
        return retry_after
    return status == NO_ANSWER and scenario.unanswered
