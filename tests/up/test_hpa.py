"""The HPA's algorithm (runtime/cluster/hpa.py), as Kubernetes documents it: the ratio to the
target with its tolerance, the stabilization windows, the step limits and the bounds."""

import random

import pytest

from bazaar.runtime.cluster.hpa import (
    KUBERNETES,
    ONE_MACHINE,
    Autoscaler,
    Behavior,
    Bounds,
    Policy,
    PolicyKind,
    Rules,
    Select,
)

UNLIMITED = Behavior(up=Rules(0, ()), down=Rules(0, ()))


def scaler(low: int = 1, high: int = 10, target: float = 4.0, behavior: Behavior = UNLIMITED,
           current: int = 2) -> Autoscaler:  # fmt: skip
    hpa = Autoscaler(Bounds(low, high), target, behavior)
    hpa.start(0.0, current)
    return hpa


def test_desired_is_the_ceiling_of_current_times_observed_over_target() -> None:
    assert scaler().decide(1, 2, 10.0).desired == 5  # ceil(2 x 10 / 4)
    assert scaler().decide(1, 3, 5.0).desired == 4  # ceil(3.75)
    assert scaler().decide(1, 4, 1.0).desired == 1


def test_a_ratio_within_the_tolerance_keeps_the_count() -> None:
    assert scaler().decide(1, 3, 4.4).desired == 3  # ratio 1.1
    assert scaler().decide(1, 3, 3.6).desired == 3  # ratio 0.9
    assert scaler().decide(1, 3, 4.5).desired == 4  # ratio 1.125: ceil(3.375)
    assert "tolerance" in scaler().decide(1, 3, 4.2).reason


def test_the_count_stays_within_its_bounds() -> None:
    high = scaler(low=2, high=5).decide(1, 3, 40.0)
    assert (high.desired, "maximum" in high.reason) == (5, True)
    low = scaler(low=2, high=5).decide(1, 4, 0.0)
    assert (low.desired, "minimum" in low.reason) == (2, True)
    assert scaler(low=2, high=5).decide(1, 7, 4.0).desired == 5
    assert scaler(low=2, high=5).decide(1, 1, 4.0).desired == 2


def test_no_signal_keeps_the_count() -> None:
    decision = scaler().decide(1, 3, None)
    assert (decision.desired, decision.changes) == (3, False)


def test_scale_down_waits_for_the_highest_recommendation_of_its_window() -> None:
    behavior = Behavior(up=Rules(0, ()), down=Rules(30, ()))
    hpa = scaler(high=20, behavior=behavior, current=4)
    assert hpa.decide(10, 4, 16.0).desired == 16  # up at once
    assert hpa.decide(20, 16, 0.5).desired == 16  # 2 wanted, 16 recommended 10 s ago
    assert hpa.decide(39, 16, 0.5).desired == 16
    later = hpa.decide(41, 16, 0.5)  # the 16 is out of the window
    assert later.desired == 2, later


def test_a_restarted_controller_does_not_scale_down_before_its_window() -> None:
    hpa = scaler(behavior=Behavior(up=Rules(0, ()), down=Rules(60, ())), current=6)
    assert hpa.decide(30, 6, 0.0).desired == 6
    assert hpa.decide(61, 6, 0.0).desired == 1


def test_scale_up_waits_for_the_lowest_recommendation_of_its_window() -> None:
    hpa = scaler(behavior=Behavior(up=Rules(20, ()), down=Rules(0, ())), current=2)
    assert hpa.decide(1, 2, 12.0).desired == 2  # 6 wanted, 2 recommended at the start
    assert hpa.decide(15, 2, 12.0).desired == 2
    assert hpa.decide(21, 2, 12.0).desired == 6  # every recommendation of the window is 6


def test_scale_up_steps_are_limited_by_the_policy_that_allows_most() -> None:
    hpa = scaler(high=100, behavior=KUBERNETES, current=2)
    assert hpa.decide(1, 2, 400.0).desired == 6  # +4 pods beats +100 %
    assert hpa.decide(2, 6, 400.0).desired == 6  # the period began at 2: 6 is its limit
    assert hpa.decide(17, 6, 400.0).desired == 12  # a new period: +100 % of 6
    assert hpa.decide(33, 12, 400.0).desired == 24


def test_scale_up_with_select_min_takes_the_policy_that_allows_least() -> None:
    up = Rules(0, (Policy(PolicyKind.PERCENT, 100, 15), Policy(PolicyKind.PODS, 1, 15)), Select.MIN)
    hpa = scaler(high=100, behavior=Behavior(up=up, down=Rules(0, ())), current=4)
    assert hpa.decide(1, 4, 100.0).desired == 5


def test_scale_down_steps_are_limited_by_their_policy() -> None:
    hpa = scaler(high=16, behavior=Behavior(up=Rules(0, ()), down=ONE_MACHINE.down), current=16)
    assert hpa.decide(61, 16, 0.0).desired == 8  # -50 % per 15 s
    assert hpa.decide(62, 8, 0.0).desired == 8
    assert hpa.decide(77, 8, 0.0).desired == 4
    assert hpa.decide(93, 4, 0.0).desired == 2
    assert hpa.decide(109, 2, 0.0).desired == 1


def test_a_noisy_signal_around_the_target_does_not_flap() -> None:
    """A steady load of 20 requests in flight, sampled with 30 % noise each period: the count
    settles at what the load needs and then holds, though single samples ask for more or
    fewer."""
    noise = random.Random(16)
    hpa = scaler(high=10, behavior=ONE_MACHINE, current=1)
    current, changes = 1, []
    for second in range(2, 1200, 2):
        observed = 20.0 / current * noise.uniform(0.7, 1.3)
        decision = hpa.decide(second, current, observed)
        if decision.changes:
            changes.append((second, current, decision.desired))
            current = decision.desired
    assert 5 <= current <= 7, changes
    assert len(changes) <= 4, changes
    assert all(second < 200 for second, _, _ in changes), changes


def test_a_falling_load_reaches_the_minimum_after_the_window() -> None:
    hpa = scaler(low=1, high=8, behavior=ONE_MACHINE, current=8)
    current, second = 8, 0.0
    while current > 1 and second < 600:
        second += 2
        current = hpa.decide(second, current, 0.0).desired
    assert current == 1
    # the window (60 s), then -50 % each 15 s: 8, 4, 2, 1
    assert 60 + 2 * 15 <= second <= 60 + 3 * 15 + 2


@pytest.mark.parametrize("target", (0.0, -1.0))
def test_a_target_must_be_positive(target: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Autoscaler(Bounds(1, 2), target, KUBERNETES)


def test_bounds_must_hold_a_count() -> None:
    with pytest.raises(ValueError):
        Bounds(3, 2)
    with pytest.raises(ValueError):
        Bounds(0, 2)
