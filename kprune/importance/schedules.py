"""When `PruningCallback` masks, and how much: its schedules.

A schedule answers one question, the target (the share of channels to mask,
or of FLOPs to cut) at a point of training, or None when nothing is due. The
callback wires it to Keras' hooks and keeps the state.

* `RampSchedule`: a fixed target reached over a span of epochs, at once or on
  the polynomial ramp of Zhu & Gupta (2017), per epoch or every few batches.
* `ToleranceSchedule`: a step more after every validation that stays within a
  `Tolerance` of the first one; the step that breaks it is undone.
"""

from __future__ import annotations

from kprune.checks import check_span
from kprune.loops.rules import Tolerance

RAMPS = ("polynomial", "constant")


class RampSchedule:
    """A target `final` reached between `start_epoch` and `end_epoch`.

    Args:
        final: the target at the end.
        start_epoch, end_epoch: the span (0-based, inclusive).
        frequency: mask every this many epochs (and at `end_epoch`).
        update_every: mask every this many batches instead.
        ramp: `"polynomial"`, `final * (1 - (1 - progress)^power)`, or
            `"constant"`, `final` from the first update.
        power: exponent of the polynomial ramp.
    """

    def __init__(
        self,
        final: float,
        start_epoch: int = 0,
        end_epoch: int | None = None,
        frequency: int = 1,
        update_every: int | None = None,
        ramp: str = "polynomial",
        power: float = 3.0,
    ):
        end_epoch = start_epoch if end_epoch is None else end_epoch
        check_span(start_epoch, end_epoch, frequency, update_every)
        if ramp not in RAMPS:
            raise ValueError(f"schedule must be one of {RAMPS}; got {ramp!r}")
        self.final, self.ramp, self.power = final, ramp, power
        self.start_epoch, self.end_epoch = start_epoch, end_epoch
        self.frequency, self.update_every = frequency, update_every

    def at_epoch(self, epoch: int) -> float | None:
        """The target at the start of `epoch`, or None when none is due."""
        if self.update_every is not None:
            return None
        if not self.start_epoch <= epoch <= self.end_epoch:
            return None
        since = epoch - self.start_epoch
        if since % self.frequency and epoch != self.end_epoch:
            return None
        span = self.end_epoch - self.start_epoch
        return self.at_progress(1.0 if span == 0 else since / span)

    def at_batch(self, epoch: int, batch: int, steps: int | None) -> float | None:
        """The target after `batch` of `epoch`, with `steps` batches an epoch."""
        if self.update_every is None:
            return None
        if not steps:
            raise ValueError(
                "update_every needs the number of steps per epoch: pass "
                "steps_per_epoch to fit, or use frequency= (in epochs)"
            )
        step = epoch * steps + batch + 1
        first, last = self.start_epoch * steps, (self.end_epoch + 1) * steps
        if not first <= step <= last or (step - first) % self.update_every:
            return None
        return self.at_progress((step - first) / max(last - first, 1))

    def at_progress(self, progress: float) -> float:
        """The target at `progress` in [0, 1] of the span."""
        if self.ramp == "constant":
            return self.final
        return self.final * (1.0 - (1.0 - progress) ** self.power)


class ToleranceSchedule:
    """Mask `step` more after each check that stays within `rule`.

    Args:
        rule: the `Tolerance` every check is judged by.
        step: the share added to the target per check.
        start_epoch: the first check, whose value is the baseline.
        frequency: check every this many epochs.
    """

    def __init__(
        self, rule: Tolerance, step: float, start_epoch: int = 0, frequency: int = 1
    ):
        check_span(start_epoch, start_epoch, frequency, None)
        self.rule, self.step = rule, step
        self.start_epoch, self.frequency = start_epoch, frequency

    def due(self, epoch: int) -> bool:
        """True when `epoch` ends with a check."""
        since = epoch - self.start_epoch
        return since >= 0 and since % self.frequency == 0

    def next_target(self, target: float, value: float, rule: Tolerance) -> float | None:
        """The next target after a check that measured `value`, or None when
        the last step broke `rule` (this schedule's rule, started)."""
        return target + self.step if rule.holds(value) else None
