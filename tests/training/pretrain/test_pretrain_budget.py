"""Fitting the run into a time budget, with a fake clock, and the LR schedule that ends inside it."""

from __future__ import annotations

import math

import pytest

from training.common.schedule import lr_factor
from training.pretrain.budget import BudgetPlanner, PlannerState


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _run(
    planner: BudgetPlanner, clock: FakeClock, step_s, first_steps_s: float = 0.0, limit: int = 100_000
) -> int:
    """Drive the planner like the trainer does; step_s(step) is the duration of that step."""
    step = 0
    while not planner.should_stop(step) and step < limit:
        clock.now += step_s(step) + (first_steps_s if step < 3 else 0.0)
        step += 1
        planner.after_step(step)
    return step


def test_plan_fills_the_budget_after_measuring() -> None:
    clock = FakeClock()
    planner = BudgetPlanner(budget_s=100.0, max_steps=None, measure_steps=30, reserve_s=10.0, clock=clock)
    planner.start()
    clock.now += 20.0  # data preparation counts against the budget
    assert planner.total_steps is None and planner.needs_sync(3) and planner.needs_sync(30)
    assert not planner.needs_sync(31) and planner.needs_sync(50)
    steps = _run(planner, clock, lambda step: 0.1, first_steps_s=2.0)  # slow first steps are not measured
    # Steps 1-3 take 6.3 s, then 0.1 s each; 20 + 6.3 + 0.1 * (N - 3) = 90 s gives N = 640.
    assert planner.total_steps == steps == 640
    assert planner.state.step_time_s == pytest.approx(0.1)
    assert planner.elapsed_s() == pytest.approx(90.0)


def test_replanning_shrinks_the_plan_when_steps_slow_down() -> None:
    clock = FakeClock()
    planner = BudgetPlanner(budget_s=60.0, max_steps=None, measure_steps=10, replan_every=20, clock=clock)
    planner.start()
    steps = _run(planner, clock, lambda step: 0.1 if step < 100 else 0.3)
    first_plan = 10 + math.floor((60 - 1.0) / 0.1)  # what step 10 promised
    assert steps < first_plan
    assert planner.elapsed_s() <= 60.0 + 0.3  # the plan ended inside the budget (to within one step)
    assert planner.total_steps == steps


def test_max_steps_caps_the_plan() -> None:
    clock = FakeClock()
    planner = BudgetPlanner(budget_s=1000.0, max_steps=50, measure_steps=10, clock=clock)
    planner.start()
    assert _run(planner, clock, lambda step: 0.1) == 50 and planner.total_steps == 50


def test_steps_only_needs_no_clock_or_sync() -> None:
    planner = BudgetPlanner(budget_s=None, max_steps=7, clock=FakeClock())
    assert planner.total_steps == 7 and not planner.needs_sync(3) and not planner.should_stop(6)
    assert planner.should_stop(7) and planner.schedule_total(0) == 7


def test_hard_stop_before_the_first_plan() -> None:
    clock = FakeClock()
    planner = BudgetPlanner(budget_s=5.0, max_steps=None, measure_steps=30, clock=clock)
    planner.start()
    assert _run(planner, clock, lambda step: 1.0) == 5  # the budget ends before step 30 could plan


def test_resume_charges_the_time_already_spent() -> None:
    clock = FakeClock()
    planner = BudgetPlanner(budget_s=100.0, max_steps=None, measure_steps=10, replan_every=10, clock=clock)
    planner.start(PlannerState(total_steps=900, spent_s=50.0, step_time_s=0.1))
    assert planner.elapsed_s() == 50.0 and planner.total_steps == 900
    step = 400
    while not planner.should_stop(step):
        clock.now += 0.1
        step += 1
        planner.after_step(step)
    assert planner.elapsed_s() == pytest.approx(100.0, abs=0.11) and step == pytest.approx(900, abs=1)


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="time budget"):
        BudgetPlanner(budget_s=None, max_steps=None)
    with pytest.raises(ValueError, match="positive"):
        BudgetPlanner(budget_s=0, max_steps=None)


def test_lr_schedule_warmup_then_decay_to_the_planned_end() -> None:
    assert lr_factor(0, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 110, 0.1) == pytest.approx(1.0)
    assert lr_factor(60, 10, 110, 0.1) == pytest.approx(0.55)  # half way down the cosine
    assert lr_factor(110, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_factor(500, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_factor(60, 10, 110, 0.0, "linear") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shape"):
        lr_factor(20, 10, 110, 0.1, "step")
