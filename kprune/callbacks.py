"""`PruningCallback`: prune while `model.fit` trains.

The callback only changes masks, which are non-trainable variables of a wrapped
model (`kprune.wrap`), so the structure stays put during `fit`; masked channels
output exactly zero whatever the optimizer does. After `fit`,
`kprune.shrink(model)` removes the masked channels for real.

Its schedule is a function of the epoch (or step), and its remaining state lives
in the wrappers' `pruning_state` variables, so a run restored from a checkpoint
(`keras.callbacks.BackupAndRestore`) continues the schedule.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from kprune.criteria import get_criterion
from kprune.graph import graph as build_graph
from kprune.layers import wrapped_layers
from kprune.planner import check_options
from kprune.planner import plan as make_plan
from kprune.training import drop
from kprune.wrapping import carriers, set_masks

SCHEDULES = ("polynomial", "constant")
# Indices into every wrapper's pruning_state vector.
BASELINE, TARGET, STOPPED, STEPS = range(4)
#: The `plan()` keywords the callback sets on every masking step.
CALLBACK_SETS = ("ratio", "flops", "criterion", "data", "graph")


@keras.saving.register_keras_serializable(package="kprune")
class PruningCallback(keras.callbacks.Callback):
    """Mask filters of a wrapped model during `fit`, on a schedule or a budget.

    ```python
    model = kprune.wrap(model)
    model.compile(...)
    model.fit(train, validation_data=val, epochs=20, callbacks=[
        kprune.PruningCallback(ratio=0.6, start_epoch=2, end_epoch=12)])
    small = kprune.shrink(model)
    ```

    Args:
        ratio: share of the prunable channels masked at the end.
        flops: share of the FLOPs kept at the end (instead of `ratio`).
        tolerance: instead of a fixed target, mask `step` more every update until
            `monitor` drops by more than this versus its value at `start_epoch`;
            then undo the last step and stop.
        criterion: which channels to mask (default `"importance"`, the learned
            multipliers; any criterion name or callable works).
        start_epoch: first epoch that masks (0-based).
        end_epoch: epoch by which the full target is reached (default
            `start_epoch`, i.e. all at once).
        frequency: mask every this many epochs.
        update_every: mask every this many batches instead (step-based).
        schedule: `"polynomial"` ramps the target as `t * (1 - (1 - p)^power)`
            over the run (Zhu & Gupta 2017); `"constant"` applies it at once.
        power: exponent of the polynomial ramp.
        step: with `tolerance`, the share of channels masked per update.
        monitor: the validation metric watched by `tolerance`.
        relative: `tolerance` is relative to the baseline value.
        data: data for data-driven criteria (`taylor`, `apoz`).
        verbose: 1 prints a line per masking step.
        **plan_options: passed to `kprune.plan` (`scope`, `round_to`, ..., and
            the criterion's options).

    Raises:
        ValueError: on bad arguments, each message naming the fix.
        TypeError: on an option the criterion does not read.
    """

    def __init__(
        self,
        ratio: float | None = None,
        flops: float | None = None,
        tolerance: float | None = None,
        criterion="importance",
        start_epoch: int = 0,
        end_epoch: int | None = None,
        frequency: int = 1,
        update_every: int | None = None,
        schedule: str = "polynomial",
        power: float = 3.0,
        step: float = 0.05,
        monitor: str = "val_accuracy",
        relative: bool = False,
        data=None,
        verbose: int = 0,
        **plan_options,
    ):
        super().__init__()
        targets = [t for t in (ratio, flops, tolerance) if t is not None]
        if len(targets) != 1:
            raise ValueError(
                "give exactly one target: ratio= (share of channels to mask), flops= "
                "(share of FLOPs to keep) or tolerance= (largest metric drop). "
                f"Received: ratio={ratio}, flops={flops}, tolerance={tolerance}"
            )
        if ratio is not None and not 0 <= ratio < 1:
            raise ValueError(f"ratio must be in [0, 1); got {ratio}")
        if flops is not None and not 0 < flops <= 1:
            raise ValueError(f"flops must be in (0, 1]; got {flops}")
        if tolerance is not None and tolerance < 0:
            raise ValueError(f"tolerance must be >= 0; got {tolerance}")
        end_epoch = start_epoch if end_epoch is None else end_epoch
        if start_epoch < 0 or end_epoch < start_epoch:
            raise ValueError(
                f"need 0 <= start_epoch <= end_epoch; got {start_epoch}, {end_epoch}"
            )
        if frequency < 1 or (update_every is not None and update_every < 1):
            raise ValueError("frequency and update_every must be >= 1")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
        if not 0 < step < 1:
            raise ValueError(f"step must be in (0, 1); got {step}")
        if get_criterion(criterion).needs_data and data is None:
            raise ValueError(f"criterion {criterion!r} needs data=")
        check_options(PruningCallback, plan_options, [criterion], sets=CALLBACK_SETS)
        self.ratio, self.flops, self.tolerance = ratio, flops, tolerance
        self.criterion = criterion
        self.start_epoch, self.end_epoch = start_epoch, end_epoch
        self.frequency, self.update_every = frequency, update_every
        self.schedule, self.power, self.step = schedule, power, step
        self.monitor, self.relative = monitor, relative
        self.data, self.verbose = data, verbose
        self.plan_options = plan_options
        self._graph = None
        self._epoch = 0

    # ---------------------------------------------------------------- config
    def get_config(self) -> dict:
        """The callback's arguments, for saving it with a model.

        Raises:
            ValueError: when an argument cannot be written down: a callable
                criterion (register it with `kprune.register_criterion` and
                pass its name) or `data=` (pass it again after loading).
        """
        if not isinstance(self.criterion, str):
            raise ValueError(
                "PruningCallback.get_config cannot write down a callable "
                f"criterion ({self.criterion!r}): register it with "
                "kprune.register_criterion(name, fn) and pass criterion=name"
            )
        if self.data is not None:
            raise ValueError(
                "PruningCallback.get_config cannot write down data=: the config "
                "would silently lose it. Create the callback again with data= "
                "instead of restoring it from a config"
            )
        config = {
            key: getattr(self, key)
            for key in (
                "ratio",
                "flops",
                "tolerance",
                "start_epoch",
                "end_epoch",
                "frequency",
                "update_every",
                "schedule",
                "power",
                "step",
                "monitor",
                "relative",
                "verbose",
            )
        }
        config["criterion"] = self.criterion
        return {**config, **self.plan_options}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # ------------------------------------------------------------- lifecycle
    def set_model(self, model):
        super().set_model(model)
        self._wrappers = wrapped_layers(model)
        if not self._wrappers:
            raise ValueError(
                f"PruningCallback needs a wrapped model, and '{model.name}' has no "
                "importance wrappers: call model = kprune.wrap(model) before "
                "compile and fit"
            )
        self._graph = build_graph(model)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.tolerance is None and self.update_every is None:
            if self._is_update_epoch(epoch):
                self._apply(self._scheduled_target(epoch), f"epoch {epoch}")

    def on_train_batch_end(self, batch, logs=None):
        if self.tolerance is not None or self.update_every is None:
            return
        steps = self.params.get("steps") if self.params else None
        if not steps:
            raise ValueError(
                "update_every needs the number of steps per epoch: pass "
                "steps_per_epoch to fit, or use frequency= (in epochs)"
            )
        step = self._epoch * steps + batch + 1
        first, last = self.start_epoch * steps, (self.end_epoch + 1) * steps
        if first <= step <= last and (step - first) % self.update_every == 0:
            progress = (step - first) / max(last - first, 1)
            self._apply(self._target_at(progress), f"step {step}")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self.tolerance is not None and epoch >= self.start_epoch:
            if (epoch - self.start_epoch) % self.frequency == 0:
                self._tolerance_step(epoch, logs)
        logs.update(self._figures())

    # -------------------------------------------------------------- schedule
    def _is_update_epoch(self, epoch) -> bool:
        """Every `frequency` epochs from `start_epoch`, and at `end_epoch`."""
        if not self.start_epoch <= epoch <= self.end_epoch:
            return False
        return (
            epoch - self.start_epoch
        ) % self.frequency == 0 or epoch == self.end_epoch

    def _scheduled_target(self, epoch) -> float:
        span = self.end_epoch - self.start_epoch
        progress = 1.0 if span == 0 else (epoch - self.start_epoch) / span
        return self._target_at(progress)

    def _target_at(self, progress: float) -> float:
        """Share to remove (ratio) or to cut from FLOPs at `progress` in [0, 1]."""
        final = self.ratio if self.ratio is not None else 1.0 - self.flops
        if self.schedule == "constant":
            return final
        return final * (1.0 - (1.0 - progress) ** self.power)

    # ---------------------------------------------------------------- masks
    def _state(self) -> np.ndarray:
        return np.asarray(keras.ops.convert_to_numpy(self._wrappers[0].pruning_state))

    def _set_state(self, state: np.ndarray) -> None:
        for wrapper in self._wrappers:
            wrapper.pruning_state.assign(state.astype("float32"))

    def _apply(self, target: float, when: str) -> None:
        """Mask the share `target` (of channels, or of FLOPs), keeping old masks."""
        target = min(max(target, 0.0), 0.99)
        if target <= 0.0:
            return
        goal = {"ratio": target} if self.flops is None else {"flops": 1.0 - target}
        plan = make_plan(
            self.model,
            _masked_first(self.criterion),
            graph=self._graph,
            data=self.data,
            **goal,
            **self.plan_options,
        )
        set_masks(self.model, plan, self._graph)
        state = self._state()
        state[TARGET], state[STEPS] = target, state[STEPS] + 1
        self._set_state(state)
        if self.verbose:
            print(
                f"PruningCallback {when}: target {target:.3f}, kept "
                f"{plan.channels_after}/{plan.channels_before} channels, FLOPs "
                f"{plan.flops_ratio:.3f}",
                flush=True,
            )

    def _tolerance_step(self, epoch, logs) -> None:
        if self.monitor not in logs:
            raise ValueError(
                f"tolerance= watches {self.monitor!r}, which is not in the logs "
                f"({sorted(logs)}): pass validation_data to fit, or set monitor= to "
                "a logged metric"
            )
        value = float(logs[self.monitor])
        state = self._state()
        if state[STOPPED]:
            return
        if state[STEPS] == 0:
            state[BASELINE] = value
            self._set_state(state)
        else:
            worse = drop(self.monitor, float(state[BASELINE]), value)
            limit = self.tolerance * (abs(state[BASELINE]) if self.relative else 1.0)
            if worse > limit:
                self._rollback()
                state = self._state()
                state[STOPPED] = 1.0
                self._set_state(state)
                if self.verbose:
                    print(
                        f"PruningCallback epoch {epoch}: {self.monitor} dropped by "
                        f"{worse:.4f} > {limit:.4f}; undid the last step and stopped",
                        flush=True,
                    )
                return
        for wrapper in self._wrappers:  # the snapshot a rollback restores
            wrapper.previous_mask.assign(wrapper.channel_mask)
        self._apply(float(state[TARGET]) + self.step, f"epoch {epoch}")

    def _rollback(self) -> None:
        """Undo the last step: its masks and its target.

        The masks before it live in the wrappers' `previous_mask` variables, so
        a run resumed by `BackupAndRestore` between the step and the breach
        still undoes it.
        """
        for wrapper in self._wrappers:
            wrapper.channel_mask.assign(wrapper.previous_mask)
        state = self._state()
        state[TARGET] = max(float(state[TARGET]) - self.step, 0.0)
        self._set_state(state)

    def _figures(self) -> dict:
        """Kept channels, FLOPs kept and the current target, for the logs."""
        from kprune.wrapping import masks_plan

        plan = masks_plan(self.model, self._graph)
        total = sum(g.size for g in self._graph.prunable) or 1
        removed = sum(d.removed for d in plan.groups.values())
        return {
            "pruning_kept_channels": 1.0 - removed / total,
            "pruning_flops_kept": plan.flops_ratio,
            "pruning_target": float(self._state()[TARGET]),
        }


def _masked_first(criterion):
    """The criterion, with channels masked already scoring lowest (masks only grow).

    It keeps the criterion's name and declared options, so `plan` checks them.
    """
    crit = get_criterion(criterion)

    def scores(group, context):
        values = np.asarray(crit.fn(group, context), dtype=np.float64)
        held = carriers(group)
        if held:
            masked = np.ones(group.size, dtype=bool)
            for wrapper, index in held:
                mask = np.asarray(keras.ops.convert_to_numpy(wrapper.channel_mask))
                masked &= mask[index].max(axis=1) == 0
            if masked.any():
                values[masked] = values.min() - 1.0
        return values

    return dataclasses.replace(crit, fn=scores)
