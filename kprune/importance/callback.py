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
import warnings

import keras
import numpy as np

from kprune.checks import check_one_target, check_settings, check_table
from kprune.criteria import get_criterion
from kprune.dependency import graph as build_graph
from kprune.importance.layers import wrapped_layers
from kprune.importance.schedules import RampSchedule, ToleranceSchedule
from kprune.latency import as_table
from kprune.loops.rules import Tolerance, as_tolerance
from kprune.messages import check_verbose, say
from kprune.planning import check_options
from kprune.planning import plan as make_plan
from kprune.results.tensorboard import PruningLog, log_dir_of
from kprune.surgery.masks import masked_units, masks_plan, set_masks

# Indices into every wrapper's pruning_state vector.
BASELINE, TARGET, STOPPED, STEPS = range(4)
#: The `plan()` keywords the callback sets on every masking step.
CALLBACK_SETS = ("ratio", "flops", "ratios", "latency", "criterion")


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
        latency: share of the dense model's measured latency kept at the end,
            as predicted by the `table=` plan option, the `kprune.LatencyTable`
            measured for the model before wrapping, or the path of its JSON
            file (instead of `ratio`; docs/latency.md).
        tolerance: instead of a fixed target, mask `step` more every update until
            `monitor` drops by more than this versus its value at `start_epoch`;
            then undo the last step and stop. A number (an absolute drop), or
            `kprune.Tolerance(drop, relative=, mode=)`, whose `mode` says
            whether higher values of `monitor` are better when kprune cannot
            read it from a loss or a compiled Keras metric. It also stops,
            and says so, once the next step would mask every channel.
        criterion: which channels to mask (default `"l1"`; any criterion
            name or callable works). `"importance"` masks by the learned
            multipliers, which must have trained first (it warns otherwise):
            masking by multipliers that have barely moved chooses worse than
            at random (docs/results.md).
        start_epoch: first epoch that masks (0-based).
        end_epoch: epoch by which the full target is reached (default
            `start_epoch`, i.e. all at once).
        frequency: mask every this many epochs.
        update_every: mask every this many batches instead (step-based).
        schedule: `"polynomial"` (default) ramps the target as
            `t * (1 - (1 - p)^power)` over the run (Zhu & Gupta 2017);
            `"constant"` applies it at once.
        power: exponent of the polynomial ramp (default 3).
        step: with `tolerance`, the share of channels masked per update
            (default 0.05).
        monitor: the validation metric watched by `tolerance` (default
            `"val_accuracy"`). (`end_epoch`, `update_every`, `schedule` and
            `power` apply to `ratio=`, `flops=` and `latency=` targets;
            `step` and `monitor` to `tolerance=`. Giving one that the target
            would ignore raises.)
        verbose: 0 silent; 1 or 2 print a line per masking step (the bar is
            `fit`'s own).
        tensorboard: a log directory, or the `keras.callbacks.TensorBoard`
            of the same `fit`: each epoch, the FLOPs and channels kept, the
            channels of every group and the importance multipliers (as
            histograms) go to `<log_dir>/pruning`. (Without it, the epoch logs
            still carry `pruning_flops_kept`, `pruning_kept_channels` and
            `pruning_target`, which a TensorBoard callback placed after this
            one writes as well.)
        **plan_options: passed to `kprune.plan` (`scope`, `round_to`, ..., and
            the criterion's options): among them `data=` for data-driven
            criteria (`taylor`, `apoz`) and `table=`, the
            `kprune.LatencyTable` measured for the model (or its JSON path),
            which `latency=` needs.

    Raises:
        ValueError: on bad arguments, each message naming the fix.
        TypeError: on an option the criterion does not read.
    """

    def __init__(
        self,
        ratio: float | None = None,
        flops: float | None = None,
        tolerance: float | Tolerance | None = None,
        latency: float | None = None,
        criterion="l1",
        start_epoch: int = 0,
        end_epoch: int | None = None,
        frequency: int = 1,
        update_every: int | None = None,
        schedule: str | None = None,
        power: float | None = None,
        step: float | None = None,
        monitor: str | None = None,
        verbose: int = 0,
        tensorboard=None,
        **plan_options,
    ):
        super().__init__()
        tensorboard = log_dir_of(tensorboard)  # a path, as the config keeps it
        tolerance = as_tolerance(tolerance, plan_options, "kprune.PruningCallback")
        self._arguments = {
            key: value
            for key, value in locals().items()
            if key not in ("self", "plan_options", "__class__")
        }
        kind = check_one_target(
            ratio=ratio, flops=flops, tolerance=tolerance, latency=latency
        )
        _refuse_ignored(kind, self._arguments)
        check_settings(ratio=ratio, flops=flops, step=step, latency=latency)
        table, data = plan_options.pop("table", None), plan_options.pop("data", None)
        check_table(table, latency is not None)
        self.table = None if table is None else as_table(table)
        for key, value in self._arguments.items():
            setattr(self, key, value)
        self.step = 0.05 if step is None else step
        self.monitor = "val_accuracy" if monitor is None else monitor
        self.schedule_ = self._make_schedule()
        if get_criterion(criterion).needs_data and data is None:
            raise ValueError(f"criterion {criterion!r} needs data=")
        check_options(PruningCallback, plan_options, [criterion], sets=CALLBACK_SETS)
        self.criterion, self.data = criterion, data
        self.verbose = check_verbose(verbose)
        self.plan_options = plan_options
        self._log = None if tensorboard is None else PruningLog(tensorboard)
        self._graph = None
        self._epoch = 0

    def _make_schedule(self):
        """When to mask: a tolerance rule, or a ramp to the final target."""
        if self.tolerance is not None:
            return ToleranceSchedule(
                self.tolerance, self.step, self.start_epoch, self.frequency
            )
        kept = self.flops if self.flops is not None else self.latency
        return RampSchedule(
            self.ratio if self.ratio is not None else 1.0 - kept,
            self.start_epoch,
            self.end_epoch,
            self.frequency,
            self.update_every,
            self.schedule or "polynomial",
            3.0 if self.power is None else self.power,
        )

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
        config = {k: v for k, v in self._arguments.items() if v is not None}
        if self.tolerance is not None:
            rule = self.tolerance
            config["tolerance"] = {
                "drop": rule.drop_allowed,
                "relative": rule.relative,
                "mode": rule.mode,
            }
        if self.table is not None:
            config["table"] = self.table.to_dict()
        return {**config, **self.plan_options}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # ------------------------------------------------------------- lifecycle
    def set_model(self, model):
        super().set_model(model)
        # Fitting a distiller (kprune.distiller): the student is the model to mask.
        if isinstance(model, keras.distillation.Distiller):
            model = model.student
        self._pruned = model
        self._wrappers = wrapped_layers(model)
        if not self._wrappers:
            raise ValueError(
                f"PruningCallback needs a wrapped model, and '{model.name}' has no "
                "importance wrappers: call model = kprune.wrap(model) before "
                "compile and fit"
            )
        self._graph = build_graph(model)
        if self.table is not None:
            self._timer = self.table.counter(self._graph)  # checks the table
        self._initial = [np.array(w.importance) for w in self._wrappers]

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if isinstance(self.schedule_, RampSchedule):
            target = self.schedule_.at_epoch(epoch)
            if target is not None:
                self._apply(target, f"epoch {epoch}")

    def on_train_batch_end(self, batch, logs=None):
        if isinstance(self.schedule_, RampSchedule):
            steps = self.params.get("steps") if self.params else None
            target = self.schedule_.at_batch(self._epoch, batch, steps)
            if target is not None:
                self._apply(target, f"epoch {self._epoch} batch {batch}")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if isinstance(self.schedule_, ToleranceSchedule) and self.schedule_.due(epoch):
            self._tolerance_step(epoch, logs)
        logs.update(self._figures())
        if self._log is not None:
            self._write_log(epoch)

    def on_train_end(self, logs=None):
        if self._log is not None:
            self._log.close()

    def _write_log(self, epoch: int) -> None:
        plan = masks_plan(self._pruned, self._graph)
        scalars = {
            k.replace("pruning_", "pruning/"): v for k, v in self._figures().items()
        }
        for group in self._graph.prunable:
            decision = plan.groups.get(group.name)
            kept = group.size if decision is None else len(decision.keep)
            scalars[f"kept_channels/{group.name}"] = kept
        histograms = {
            f"importance/{w.name}": keras.ops.convert_to_numpy(w.importance)
            for w in self._wrappers
        }
        self._log.write(epoch, scalars, histograms)

    # ---------------------------------------------------------------- masks
    def _state(self) -> np.ndarray:
        return np.asarray(keras.ops.convert_to_numpy(self._wrappers[0].pruning_state))

    def _set_state(self, state: np.ndarray) -> None:
        for wrapper in self._wrappers:
            wrapper.pruning_state.assign(state.astype("float32"))

    def _apply(self, target: float, when: str) -> None:
        """Mask the share `target` (of channels, or of FLOPs), keeping old masks."""
        if target <= 0.0:
            return
        self._warn_if_untrained()
        goal = {"ratio": target}
        if self.flops is not None:
            goal = {"flops": 1.0 - target}
        elif self.latency is not None:
            goal = {"latency": 1.0 - target, "table": self.table}
        plan = make_plan(
            self._graph,
            _masked_first(self.criterion),
            data=self.data,
            **goal,
            **self.plan_options,
        )
        set_masks(self._pruned, plan, self._graph)
        state = self._state()
        state[TARGET], state[STEPS] = target, state[STEPS] + 1
        self._set_state(state)
        say(
            f"PruningCallback {when}: target {target:.3f}, kept "
            f"{plan.channels_after}/{plan.channels_before} channels, FLOPs "
            f"{plan.flops_ratio:.3f}",
            self.verbose,
        )

    def _warn_if_untrained(self) -> None:
        """Warn once when masking by multipliers that have not moved yet."""
        if self.criterion != "importance" or getattr(self, "_warned", False):
            return
        moved = max(
            float(np.abs(np.asarray(w.importance) - start).max())
            for w, start in zip(self._wrappers, self._initial)
        )
        if moved < 1e-3:
            self._warned = True
            warnings.warn(
                "PruningCallback masks by the importance multipliers, which have "
                f"not trained yet (they moved by at most {moved:.1e}): the choice "
                "is arbitrary. Start later (start_epoch=, or a polynomial "
                "schedule), train with a regularizer first, or pass criterion='l1'.",
                stacklevel=3,
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
        rule = self.schedule_.rule.start(self.monitor, state[BASELINE], self.model)
        target = self.schedule_.next_target(float(state[TARGET]), value, rule)
        if target is not None and target >= 1.0:
            self._stop(
                f"PruningCallback epoch {epoch}: a step more would mask every "
                f"channel (target {target:.2f}); stopped at "
                f"{float(state[TARGET]):.2f}"
            )
            return
        if target is None:
            self._rollback()
            self._stop(
                f"PruningCallback epoch {epoch}: {self.monitor} dropped by "
                f"{rule.drop(value):.4f} > {rule.limit:.4f}; undid the last "
                "step and stopped"
            )
            return
        for wrapper in self._wrappers:  # the snapshot a rollback restores
            wrapper.previous_mask.assign(wrapper.channel_mask)
        self._apply(target, f"epoch {epoch}")

    def _stop(self, why: str) -> None:
        state = self._state()
        state[STOPPED] = 1.0
        self._set_state(state)
        say(why, self.verbose)

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
        plan = masks_plan(self._pruned, self._graph)
        total = sum(g.size for g in self._graph.prunable) or 1
        removed = sum(d.removed for d in plan.groups.values())
        figures = {
            "pruning_kept_channels": 1.0 - removed / total,
            "pruning_flops_kept": plan.flops_ratio,
            "pruning_target": float(self._state()[TARGET]),
        }
        if self.table is not None:
            predicted = self._timer(plan.keep_units(self._graph))
            figures["pruning_latency_kept"] = predicted / self.table.dense_ms
        return figures


#: Arguments that only one kind of target reads.
_ONLY_WITH = {
    "tolerance": ("step", "monitor"),
    "ramp": ("end_epoch", "update_every", "schedule", "power"),
}


def _refuse_ignored(kind: str, arguments: dict) -> None:
    """Raise for an argument that the chosen target would ignore."""
    other = "ramp" if kind == "tolerance" else "tolerance"
    given = [k for k in _ONLY_WITH[other] if arguments.get(k) is not None]
    if given:
        users = "tolerance=" if other == "tolerance" else "ratio=, flops= or latency="
        raise ValueError(
            f"{', '.join(f'{k}=' for k in given)} only apply with {users}, and "
            f"would be ignored with {kind}=: leave them out"
        )


def _masked_first(criterion):
    """The criterion, with channels masked already scoring lowest (masks only grow).

    It keeps the criterion's name and declared options, so `plan` checks them.
    """
    crit = get_criterion(criterion)

    def scores(group, context):
        values = np.asarray(crit.fn(group, context), dtype=np.float64)
        masked = masked_units(group)
        if masked.any():
            values[masked] = values.min() - 1.0
        return values

    return dataclasses.replace(crit, fn=scores)
