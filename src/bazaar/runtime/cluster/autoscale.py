"""The controller of `bazaar up --autoscale`: the HPA's algorithm (hpa.py) applied to the load
HAProxy sees, with `bazaar scale`'s own code path (control.set_in_service), run by supervisord
as the program `autoscaler`.

The signal is the requests in flight per instance: every SAMPLE_SECONDS, HAProxy's `show
stat` gives each server's current requests (`scur`) and those queued for it or its backend
(`qcur`); their sum over the instances UP, divided by their count, averaged over the period,
is the value the HPA compares with the service's target (below the target, scaled to how
busy the instances are: `equivalent_in_flight`). In flight rather than CPU: it rises
as soon as requests wait, whether the instance is short of CPU, of database connections or
of a lock, and it is what a client feels (latency = in flight / rate, by Little's law).

A decision that changes the count is applied at once: instances are started and waited for
ready, or drained in HAProxy (no new request, those in flight finish) and then stopped, so
that scaling in drops no request. Each period's decision, and the last changes, are written
to `autoscale.json` in the `up` folder, which `bazaar status` prints.

Workers (`--autoscale notifications-worker=1..3`) scale the same way on the messages ready in
their service's queues per worker running (queue_depth.py, read once a period), against a
target such as KEDA's `queueLength`; a worker is started and waited for ready, or stopped with
SIGTERM, which returns what it holds to the broker (control.set_workers). A decision's
`service` is then the key `SERVICE-worker`.
"""

import csv
import io
import os
import signal
import time
import xmlrpc.client
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from bazaar.runtime.cluster import haproxy, hpa
from bazaar.runtime.cluster.control import DOWN_STATES, set_in_service, set_workers
from bazaar.runtime.cluster.folder import Folder, read_env_file
from bazaar.runtime.cluster.queue_depth import QueueDepths
from bazaar.runtime.cluster.record import RunAutoscale, RunRecord
from bazaar.runtime.cluster.supervisor import Supervisor
from bazaar.runtime.cluster.topology import signal_of, split_key, worker_key
from bazaar.runtime.cluster.up import UpError

SAMPLE_SECONDS = 0.25
KEPT_EVENTS = 50
FILE_NAME = "autoscale.json"


class Event(msgspec.Struct, frozen=True):
    """One decision: `before` to `after` instances in service, and why."""

    at: float
    service: str
    before: int
    after: int
    observed: float | None
    target: float
    reason: str


class ServiceState(msgspec.Struct, frozen=True):
    minimum: int
    maximum: int
    target: float
    in_service: int
    last: Event


class Report(msgspec.Struct):
    """What `autoscale.json` holds: each service's range, count and last decision, and the
    last changes, oldest first."""

    period: float
    up_window: float
    down_window: float
    services: dict[str, ServiceState] = {}
    events: list[Event] = []


def decisions_file(folder: Folder) -> Path:
    return folder.root / FILE_NAME


def read_report(folder: Folder) -> Report | None:
    try:
        return msgspec.json.decode(decisions_file(folder).read_bytes(), type=Report)
    except (OSError, ValueError):  # msgspec's DecodeError is a ValueError
        return None


def _write(path: Path, report: Report) -> None:
    """Whole or not at all: `status` may read it at any moment."""
    partial = path.with_suffix(".partial")
    partial.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2))
    os.replace(partial, path)


def in_flight(stat_csv: str) -> dict[str, float | None]:
    """Requests in flight per instance UP, by backend, from HAProxy's `show stat`: those at
    an instance and those queued for one (None: no instance UP)."""
    totals: dict[str, int] = {}
    serving: dict[str, int] = {}
    for row in csv.DictReader(io.StringIO(stat_csv.lstrip("# "))):
        backend, server = row["pxname"], row["svname"]
        if server == "FRONTEND":
            continue
        if server == "BACKEND":
            totals[backend] = totals.get(backend, 0) + int(row["qcur"] or 0)
        elif row["status"].startswith("UP"):
            totals[backend] = totals.get(backend, 0) + int(row["scur"] or 0)
            totals[backend] += int(row["qcur"] or 0)
            serving[backend] = serving.get(backend, 0) + 1
    return {
        backend: (total / serving[backend] if serving.get(backend) else None)
        for backend, total in totals.items()
    }


def equivalent_in_flight(observed: float, target: float) -> float:
    """What the HPA's proportional rule is given for `observed` requests in flight per
    instance. At or above the target, the count itself: up fast, as the HPA goes. Below it,
    the count in proportion to how busy the instances are: an instance short of CPU queues
    like one server (M/M/1), whose requests in flight L and busy fraction L / (1 + L) are far
    from proportional (0.5 in flight is a third busy, 4 is four fifths). Taken as it is, a
    quiet spell asked for a third of the instances its load needs, and the count went 6, 4,
    then 6 again under a steady load (`bazaar bench ramp`). Scaled so that the target is
    itself."""
    if observed >= target:
        return observed
    return target * (observed / (1 + observed)) / (target / (1 + target))


def behavior(scaling: RunAutoscale) -> hpa.Behavior:
    """The one-machine behavior (hpa.ONE_MACHINE) with the windows `up` was given."""
    return hpa.Behavior(
        up=hpa.Rules(scaling.up_window, hpa.ONE_MACHINE.up.policies),
        down=hpa.Rules(scaling.down_window, hpa.ONE_MACHINE.down.policies),
    )


class Controller:
    """Samples the signal, decides each period, applies and records the decisions."""

    def __init__(
        self,
        folder: Folder,
        scaling: RunAutoscale,
        say: Callable[[str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder, self.scaling, self.say, self.clock = folder, scaling, say, clock
        kept = max(1, round(scaling.period / SAMPLE_SECONDS))
        self.samples = {name: deque[float | None](maxlen=kept) for name in scaling.ranges}
        workers = [split_key(k)[0] for k in scaling.ranges if split_key(k)[1] == "worker"]
        environment = read_env_file(folder.env_file)
        self.queues = QueueDepths(environment, workers) if workers else None
        self.scalers = {
            name: hpa.Autoscaler(hpa.Bounds(low, high), scaling.targets[name], behavior(scaling))
            for name, (low, high) in scaling.ranges.items()
        }
        self.current = self._running()
        now = clock()
        for name, scaler in self.scalers.items():
            scaler.start(now, self.current[name])
        self.report = Report(scaling.period, scaling.up_window, scaling.down_window)

    def _running(self) -> dict[str, int]:
        """The instances (or workers) of each key that `up` or a decision left running."""
        states = {p.name: p.state for p in Supervisor(self.folder.layout).programs()}
        run = RunRecord.load(self.folder.run)
        return {
            key: sum(states.get(p.name) not in DOWN_STATES for p in run.of(*split_key(key)))
            for key in self.scaling.ranges
        }

    def sample(self) -> None:
        """Requests in flight per API instance (HAProxy): every SAMPLE_SECONDS."""
        observed = in_flight(haproxy.admin(self.folder.haproxy_socket, "show stat"))
        for name, samples in self.samples.items():
            if split_key(name)[1] == "serve":
                samples.append(observed.get(name))

    def _sample_queues(self) -> None:
        """Messages ready per worker running: once a period (each read is a round trip to
        the broker per queue)."""
        if self.queues is None:
            return
        for service, ready in self.queues.read().items():
            key = worker_key(service)
            running = self.current[key]
            self.samples[key].append(None if ready is None or not running else ready / running)

    def observed(self, name: str) -> float | None:
        """The API's in flight averaged over the period; a worker's queue as last read."""
        if split_key(name)[1] == "worker":
            return self.samples[name][-1] if self.samples[name] else None
        values = [v for v in self.samples[name] if v is not None]
        return sum(values) / len(values) if values else None

    def step(self) -> None:
        """One period: a decision per service, applied when it changes the count."""
        self._sample_queues()
        for name, scaler in self.scalers.items():
            observed = self.observed(name)
            signal = observed
            if observed is not None and split_key(name)[1] == "serve":
                signal = equivalent_in_flight(observed, scaler.target)
            decision = scaler.decide(self.clock(), self.current[name], signal)
            reason = decision.reason
            if observed is not None and signal != observed:
                reason = f"in flight {observed:.2f}, as busy as {signal:.2f}: {reason}"
            event = Event(
                decision.at,
                name,
                decision.current,
                decision.desired,
                observed,
                decision.target,
                reason,
            )
            if decision.changes:
                event = self._apply(event)
            low, high = self.scaling.ranges[name]
            self.report.services[name] = ServiceState(
                low, high, decision.target, self.current[name], event
            )
        _write(decisions_file(self.folder), self.report)

    def close(self) -> None:
        if self.queues is not None:
            self.queues.close()

    def _apply(self, event: Event) -> Event:
        self.say(f"{event.service}: {event.before} -> {event.after} ({event.reason})")
        service, kind = split_key(event.service)
        apply = set_in_service if kind == "serve" else set_workers
        try:
            apply(service, event.after, self.folder, self.say)
        except (UpError, OSError, RuntimeError, xmlrpc.client.Error) as error:
            event = msgspec.structs.replace(event, reason=f"{event.reason}; failed: {error}")
            self.say(f"{event.service}: scaling failed: {error}")
            self.current = self._running()
        else:
            self.current[event.service] = event.after
            self.samples[event.service].clear()  # those were of the count before
        self.report.events = [*self.report.events, event][-KEPT_EVENTS:]
        return event


def run(folder: Folder, say: Callable[[str], None]) -> None:
    """Until SIGTERM (supervisord's stop): a sample every SAMPLE_SECONDS, a decision every
    period. A scale in progress finishes first (its drain included)."""
    scaling = RunRecord.load(folder.run).topology.autoscale
    if scaling is None:
        raise UpError(f"`bazaar up` on {folder.root} was not started with --autoscale")
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda number, _frame: stopping.append(number))
    controller = Controller(folder, scaling, say)
    say(f"autoscaling {', '.join(scaling.ranges)} every {scaling.period:g} s")
    next_step = time.monotonic() + scaling.period
    try:
        while not stopping:
            try:
                controller.sample()
            except OSError as error:  # HAProxy restarting: no sample this time
                say(f"HAProxy's stats socket: {error}")
            if time.monotonic() >= next_step:
                controller.step()
                next_step = time.monotonic() + scaling.period
            time.sleep(SAMPLE_SECONDS)
    finally:
        controller.close()


def status_part(folder: Folder) -> dict[str, Any] | None:
    """The controller's report as `bazaar status --json` shows it."""
    report = read_report(folder)
    return None if report is None else msgspec.to_builtins(report)


def render(part: dict[str, Any] | None) -> list[str]:
    """The lines of `bazaar status` about the autoscaler."""
    if part is None:
        return []
    lines = [
        "",
        f"Autoscaler (every {part['period']:g} s; stabilization up {part['up_window']:g} s,"
        f" down {part['down_window']:g} s; in flight per instance, or ready per worker,"
        " against the target):",
    ]
    for name, s in part["services"].items():
        last = s["last"]
        observed = "-" if last["observed"] is None else f"{last['observed']:.2f}"
        lines.append(
            f"  {name:<22}{s['in_service']} in service ({s['minimum']}..{s['maximum']})"
            f"  {_signal(name)} {observed} / {s['target']:g}  {last['reason']}"
        )
    if part["events"]:
        lines.append("  last changes:")
    for e in part["events"][-10:]:
        at = time.strftime("%H:%M:%S", time.localtime(e["at"]))
        observed = "-" if e["observed"] is None else f"{e['observed']:.2f}"
        lines.append(
            f"  {at} {e['service']:<22}{e['before']} -> {e['after']}"
            f"  {_signal(e['service'])} {observed} / {e['target']:g}: {e['reason']}"
        )
    return lines


def _signal(key: str) -> str:
    return signal_of(key).split(" per ")[0]
