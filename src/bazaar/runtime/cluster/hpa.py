"""The Horizontal Pod Autoscaler's algorithm (Kubernetes autoscaling/v2), without I/O: how
many instances a service should run, given how many run and the load each one carries.

Each period (`Autoscaler.decide`), as the HPA controller does it:

1. the ratio of the observed value per instance to the target; within the tolerance of 1
   (0.1: from 0.9 to 1.1) the count stays, else the recommendation is
   `ceil(current x observed / target)`;
2. stabilization: the count goes up to no more than the lowest recommendation of the
   scale-up window, and down to no less than the highest of the scale-down window, so that
   one quiet sample does not take instances away;
3. step limits: within each policy's period the count moves by at most its pods or percent
   of the count the period started with (of several policies, the one that allows the
   largest change, `Max`, or the smallest, `Min`);
4. the bounds: never under `minimum` nor over `maximum` (a count outside them is brought in
   at once).

`KUBERNETES` holds the HPA's own defaults; `ONE_MACHINE` those of `bazaar up --autoscale`.
"""

import math
from dataclasses import dataclass, field
from enum import StrEnum


class PolicyKind(StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


class Select(StrEnum):
    MAX = "Max"
    """The policy that allows the largest change."""
    MIN = "Min"


@dataclass(frozen=True)
class Policy:
    kind: PolicyKind
    value: int
    period: float
    """Seconds over which the change is counted."""


@dataclass(frozen=True)
class Rules:
    """One direction's behavior (`spec.behavior.scaleUp` or `scaleDown`)."""

    window: float
    """Stabilization window, in seconds."""
    policies: tuple[Policy, ...]
    select: Select = Select.MAX


@dataclass(frozen=True)
class Behavior:
    up: Rules
    down: Rules
    tolerance: float = 0.1


KUBERNETES = Behavior(
    up=Rules(0, (Policy(PolicyKind.PERCENT, 100, 15), Policy(PolicyKind.PODS, 4, 15))),
    down=Rules(300, (Policy(PolicyKind.PERCENT, 100, 15),)),
)
ONE_MACHINE_DOWN_WINDOW = 60.0
ONE_MACHINE = Behavior(
    up=KUBERNETES.up,
    # An instance starts and is ready in 2 to 3 s here, not the minutes a pod may take to be
    # scheduled and pull its image: taking one away too early costs a few seconds of latency,
    # while keeping it costs a share of the same few cores every other process needs.
    down=Rules(ONE_MACHINE_DOWN_WINDOW, (Policy(PolicyKind.PERCENT, 50, 15),)),
)


@dataclass(frozen=True)
class Bounds:
    minimum: int
    maximum: int

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.maximum:
            raise ValueError(f"expected 1 <= minimum <= maximum, got {self}")


@dataclass(frozen=True)
class Decision:
    at: float
    current: int
    desired: int
    observed: float | None
    """The load per instance (None: no signal this period)."""
    target: float
    reason: str

    @property
    def changes(self) -> bool:
        return self.desired != self.current


@dataclass
class Autoscaler:
    """One service's HPA. `decide` remembers its recommendations (for the windows) and the
    changes it decided (for the step limits): the caller applies each decision, as the HPA
    controller records a scale event once it has set the new count."""

    bounds: Bounds
    target: float
    behavior: Behavior
    _recommendations: list[tuple[float, int]] = field(default_factory=list)
    _changes: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.target <= 0:
            raise ValueError(f"the target must be positive, got {self.target}")

    def start(self, now: float, current: int) -> None:
        """The count running when the controller starts counts as recommended then: it does
        not scale down before a scale-down window has passed (the HPA does the same)."""
        self._recommendations = [(now, current)]
        self._changes = []

    def decide(self, now: float, current: int, observed: float | None) -> Decision:
        if current > self.bounds.maximum:
            return self._record(now, current, self.bounds.maximum, observed, "above the maximum")
        if current < self.bounds.minimum:
            return self._record(now, current, self.bounds.minimum, observed, "under the minimum")
        if observed is None:
            return Decision(now, current, current, None, self.target, "no signal: kept")
        wanted, reason = self.recommend(current, observed)
        stabilized, why = self._stabilize(now, current, wanted)
        desired, limited = self._limit(now, current, stabilized)
        return self._record(now, current, desired, observed, limited or why or reason)

    def recommend(self, current: int, observed: float) -> tuple[int, str]:
        """The replica calculator: the count that would bring the load per instance to the
        target, or `current` when the ratio is within the tolerance."""
        ratio = observed / self.target
        if abs(ratio - 1.0) <= self.behavior.tolerance + 1e-9:  # 4.4 / 4 is 1.1000...01
            return current, f"{observed:.2f} per instance is within tolerance of {self.target:g}"
        wanted = math.ceil(current * ratio)
        return wanted, f"{observed:.2f} per instance against {self.target:g}: {wanted} wanted"

    def _stabilize(self, now: float, current: int, wanted: int) -> tuple[int, str]:
        up_cutoff = now - self.behavior.up.window
        down_cutoff = now - self.behavior.down.window
        up, down = wanted, wanted
        for at, recommended in self._recommendations:
            if at > up_cutoff:
                up = min(up, recommended)
            if at > down_cutoff:
                down = max(down, recommended)
        oldest = min(up_cutoff, down_cutoff)
        self._recommendations = [r for r in self._recommendations if r[0] > oldest]
        self._recommendations.append((now, wanted))
        stabilized = min(max(current, up), down)
        if stabilized == wanted:
            return stabilized, ""
        if stabilized > wanted:
            window = self.behavior.down.window
            return stabilized, f"{wanted} wanted, held at {stabilized} (highest in {window:g} s)"
        window = self.behavior.up.window
        return stabilized, f"{wanted} wanted, held at {stabilized} (lowest in {window:g} s)"

    def _limit(self, now: float, current: int, desired: int) -> tuple[int, str]:
        """The step limits and the bounds; a reason when either changed `desired`."""
        if desired > current:
            limit = max(self._step_limit(now, current, self.behavior.up, up=True), current)
            ceiling = min(self.bounds.maximum, limit)
            if desired > ceiling:
                what = "the maximum" if ceiling == self.bounds.maximum else "the scale-up policy"
                return ceiling, f"{desired} wanted, {ceiling} by {what}"
        elif desired < current:
            limit = min(self._step_limit(now, current, self.behavior.down, up=False), current)
            floor = max(self.bounds.minimum, limit)
            if desired < floor:
                what = "the minimum" if floor == self.bounds.minimum else "the scale-down policy"
                return floor, f"{desired} wanted, {floor} by {what}"
        return desired, ""

    def _step_limit(self, now: float, current: int, rules: Rules, up: bool) -> int:
        """The furthest count the policies allow, from the count each policy's period began
        with (the changes decided within it undone)."""
        proposals = []
        for policy in rules.policies:
            moved = sum(change for at, change in self._changes if at > now - policy.period)
            start = current - moved
            if policy.kind is PolicyKind.PODS:
                proposals.append(start + policy.value if up else start - policy.value)
            elif up:
                proposals.append(math.ceil(start * (1 + policy.value / 100)))
            else:
                proposals.append(int(start * (1 - policy.value / 100)))
        if not proposals:  # no policy: no limit
            return self.bounds.maximum if up else self.bounds.minimum
        largest = (rules.select is Select.MAX) == up
        return max(proposals) if largest else min(proposals)

    def _record(
        self, now: float, current: int, desired: int, observed: float | None, reason: str
    ) -> Decision:
        if desired != current:
            longest = max(
                (p.period for p in (*self.behavior.up.policies, *self.behavior.down.policies)),
                default=0.0,
            )
            self._changes = [c for c in self._changes if c[0] > now - longest]
            self._changes.append((now, desired - current))
        return Decision(now, current, desired, observed, self.target, reason)
