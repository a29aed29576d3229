"""What tracing costs: the cached product page and the checkout on `bazaar dev` with tracing
off, at 1% and at 100% sampling, in one run.

Each setting runs a `bazaar dev` of its own, seeded alike and under the same CPU quota; the two
that trace export by OTLP/HTTP to a sink of their own that the bench runs on loopback (a
receiver that counts the spans, `bench/otlp.py`), so the export's whole cost on the process
(the spans, their batching and encoding, the HTTP posts) is in the figures, and a collector's
is not. As with a baseline commit (bench/experiment.py), every workload is measured on the
settings in turn, the order reversed every round (off, 1%, 100%, then 100%, 1%, off), each
setting keeping its best round; all three stay up, the two not measured idle.

The spans each sink received that started during a kept round are its sanity check: about one
a request at 100% on the cached page, a hundredth of that at 1%, none off (no sink). Tracing
off against the commit before tracing is the baseline comparison's (`--baseline`).
"""

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bazaar.runtime.cluster.cpulimit import CpuGroups
from bench import loadgen
from bench.otlp import Receiver, otlp_receiver
from bench.plan import TRACED, TRACING_SETTINGS, Plan
from bench.results import TracingCost, TracingSetting, headline
from bench.sides import Load, Measured, Side, Step, observe
from bench.source import THIS
from bench.systems import Embedded

WHAT = {
    "product": "cached product pages, as fast as they are answered",
    "checkout": "checkout, as fast as orders settle",
}


@dataclass
class Traced:
    """One setting under test: its side (a `bazaar dev`), its sink, when it traces, and when
    each of its rounds ran."""

    setting: TracingSetting
    side: Side
    sink: Receiver | None
    windows: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def _slug(name: str) -> str:
    return name.replace("%", "-percent")


def _loads(plan: Plan) -> dict[str, Load]:
    users = plan.checkout_users_per_instance * 4  # as the embedded mode's checkout
    return {
        "product": lambda side, seconds: (
            lambda: loadgen.wrk(side.system.url, "product", side.catalog, seconds, plan.connections)
        ),
        "checkout": lambda side, _seconds: side.journeys.ready("checkout", users),
    }


def run_tracing(plan: Plan, folder: Path, groups: CpuGroups, step: Step) -> TracingCost:
    """Every workload of `TRACED` on every setting of `TRACING_SETTINGS`, `plan.rounds` times,
    in `folder`."""
    cost = TracingCost(quota_cores=plan.embedded_quota, rounds=plan.rounds)
    with ExitStack() as sinks:
        traced = []
        for name, ratio in TRACING_SETTINGS:
            here = folder / _slug(name)
            here.mkdir(parents=True, exist_ok=True)
            sink, settings = None, {}
            if ratio is not None:
                sink, url = sinks.enter_context(otlp_receiver(keep=False))
                settings = {"BAZAAR_OTLP_ENDPOINT": url, "BAZAAR_TRACE_SAMPLE_RATIO": str(ratio)}
            group = f"bazaar-dev-tracing-{_slug(name)}"
            system = Embedded(here, plan.embedded_quota, groups, settings=settings, group=group)
            traced.append(Traced(TracingSetting(name, ratio), Side(THIS, system, here), sink))
        names = ", ".join(t.setting.name for t in traced)
        step(f"tracing: starting `bazaar dev` for each of {names} ({plan.products:,} products)")
        try:
            for each in traced:
                each.side.system.start(plan.products)
                each.side.prepare(plan)
            pairs = 0
            loads = _loads(plan)
            for workload in TRACED:
                for number in range(plan.rounds):
                    order = traced if pairs % 2 == 0 else traced[::-1]
                    pairs += 1
                    rounds = f" (round {number + 1} of {plan.rounds})" if plan.rounds > 1 else ""
                    for each in order:
                        step(f"tracing {each.setting.name}: {WHAT[workload]}{rounds}")
                        _measure(each, workload, loads[workload], plan)
        finally:
            for each in traced:  # stopped, each exports the spans it still holds
                each.side.system.stop()
        for each in traced:
            _keep(each)
            cost.settings.append(each.setting)
    return cost


def _measure(each: Traced, workload: str, load: Load, plan: Plan) -> None:
    side = each.side
    journey = workload == "checkout"
    if not journey:
        load(side, plan.warm_seconds)()
    run = load(side, plan.journey_seconds if journey else plan.seconds)
    started = time.time()
    measured = observe(side.system, workload, run)
    each.windows.setdefault(workload, []).append((started, time.time()))
    side.rounds.setdefault(workload, []).append(measured)


def _keep(each: Traced) -> None:
    """Each workload's best round into the setting, with the spans that started in it."""
    setting, side = each.setting, each.side
    for workload, rounds in side.rounds.items():
        kept: Measured = side.kept(workload)
        setting.workloads[workload] = kept.measurement
        if kept.cpu_ms_per_order is not None:
            setting.cpu_ms_per_order[workload] = kept.cpu_ms_per_order
        setting.rounds[workload] = [headline(workload, m.measurement)[1] for m in rounds]
        if each.sink is not None:
            number = next(i for i, measured in enumerate(rounds) if measured is kept)
            started, ended = each.windows[workload][number]
            setting.spans[workload] = each.sink.started_between(started, ended)
    if each.sink is not None:
        setting.spans_received = each.sink.received


def failures(cost: TracingCost) -> list[str]:
    """What makes `--quick` fail in the tracing experiment: any error, an order that never
    settled, and tracing at 100% that sent the sink no span (it was not on)."""
    found = []
    for setting in cost.settings:
        label = f"tracing {setting.name}"
        for name, m in setting.workloads.items():
            if m.errors:
                found.append(f"{label} {name}: {m.errors} error(s)")
            if m.unsettled:
                found.append(f"{label} {name}: {m.unsettled} order(s) never settled")
            if setting.sample_ratio == 1.0 and not setting.spans.get(name):
                found.append(f"{label} {name}: the sink received no span")
    return found
