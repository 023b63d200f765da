"""Fit a training run into a fixed wall-clock budget: measure the step time, fix the step count,
and give the step the learning-rate schedule (``training.common.schedule``) decays to, so that it ends
exactly there.

The clock is injected (`time.perf_counter` by default), so the planning logic is tested with a
fake clock. Times the planner reads must be taken after the device has finished the step: the
trainer synchronises the GPU only at the steps where `needs_sync` says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from training.errors import PresetError


@dataclass
class PlannerState:
    """What a checkpoint keeps of the planner, so a resumed run continues the same schedule."""

    total_steps: int | None  # None until planned (time budget only)
    spent_s: float  # wall time spent before this process (earlier runs of a resumed training)
    step_time_s: float | None  # latest measured seconds per step


class BudgetPlanner:
    """Decides how many optimizer steps fit, and when to stop.

    With only `max_steps`, the total is fixed from the start. With a time budget (seconds, counted
    from `start`, which the caller takes at the beginning of the whole run so that data preparation
    counts too), the planner times steps `skip_steps` .. `measure_steps` (skip_steps defaults to 3:
    the first steps pay for kernel selection and allocation), then fixes the total to what fits the
    remaining time, keeping `reserve_s` for saving. At each later sync point it re-plans from the
    step time since the previous sync point, so a run whose steps slow down still ends its schedule
    inside the budget.
    `max_steps` caps the total in both cases.
    """

    def __init__(
        self,
        budget_s: float | None,
        max_steps: int | None,
        *,
        measure_steps: int = 30,
        skip_steps: int | None = None,
        reserve_s: float = 0.0,
        replan_every: int = 50,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if budget_s is None and max_steps is None:
            raise PresetError("give a time budget (--time-budget-min) or a step count (--max-steps), or both")
        if budget_s is not None and budget_s <= 0:
            raise PresetError(f"the time budget must be positive, got {budget_s} s")
        if skip_steps is None:
            skip_steps = min(3, measure_steps - 1)
        if not 0 <= skip_steps < measure_steps:
            raise PresetError(f"need 0 <= skip_steps < measure_steps, got {skip_steps} and {measure_steps}")
        self.budget_s, self.max_steps = budget_s, max_steps
        self.measure_steps, self.skip_steps = measure_steps, skip_steps
        self.reserve_s, self.replan_every = reserve_s, replan_every
        self.clock = clock
        self.state = PlannerState(
            total_steps=max_steps if budget_s is None else None, spent_s=0.0, step_time_s=None
        )
        self._start = clock()
        self._mark: tuple[int, float] | None = None  # (step, time) where timing began

    # --- life cycle ---------------------------------------------------------------------------------

    def start(self, state: PlannerState | None = None, start_time: float | None = None) -> None:
        """Begin (or, with a checkpoint's state, resume) the budget clock at `start_time` (default now)."""
        self._start = self.clock() if start_time is None else start_time
        if state is not None:
            self.state = PlannerState(**asdict(state))
        self._mark = None

    def elapsed_s(self) -> float:
        """Wall time charged to the budget so far, earlier runs included."""
        return self.state.spent_s + self.clock() - self._start

    @property
    def total_steps(self) -> int | None:
        return self.state.total_steps

    def needs_sync(self, step: int) -> bool:
        """Whether the caller must wait for the device before `after_step(step)` (a timing point)."""
        if self.budget_s is None:
            return False
        return step in (self.skip_steps, self.measure_steps) or (
            step > self.measure_steps and step % self.replan_every == 0
        )

    def after_step(self, step: int) -> None:
        """Record that `step` optimizer steps are done (call it after every step)."""
        if self.budget_s is None or not self.needs_sync(step):
            return
        now = self.clock()
        if self._mark is None or step == self.skip_steps:
            # Timing starts here; a resumed run restarts timing at its first sync point.
            self._mark = (step, now)
            return
        mark_step, mark_time = self._mark
        self.state.step_time_s = (now - mark_time) / (step - mark_step)
        self._mark = (step, now)  # the next plan uses the steps since this one: recent speed counts
        self._plan(step)

    def _plan(self, step: int) -> None:
        assert self.budget_s is not None and self.state.step_time_s is not None, (
            "plan needs a budget and a timing"
        )
        remaining = self.budget_s - self.reserve_s - self.elapsed_s()
        total = step + max(0, math.floor(remaining / self.state.step_time_s))
        if self.max_steps is not None:
            total = min(total, self.max_steps)
        self.state.total_steps = max(total, step)

    def should_stop(self, step: int) -> bool:
        """True when `step` steps complete the plan, or the budget is spent (a hard stop)."""
        if self.state.total_steps is not None and step >= self.state.total_steps:
            return True
        if self.max_steps is not None and step >= self.max_steps:
            return True
        return self.budget_s is not None and self.elapsed_s() >= self.budget_s - self.reserve_s

    def schedule_total(self, step: int) -> int:
        """The step the LR schedule decays to: the plan, else `max_steps`, else (still unplanned, in
        warmup) a far step, so the schedule stays flat until the plan exists."""
        total = self.state.total_steps if self.state.total_steps is not None else self.max_steps
        return max(step + 1, total if total is not None else 10**9)
