"""Knowledge distillation while fine-tuning a pruned model.

The pruned model (the student) learns from the labels and from the unpruned
model (the teacher): `loss = task loss + weight * T^2 * D(teacher / T, student / T)`
(Hinton et al. 2015), where `D` compares the two models' softened outputs:

* class probabilities or logits (a categorical cross-entropy loss): the
  Kullback-Leibler divergence of the two softmax distributions at temperature T;
* one probability or logit per element (a binary cross-entropy loss, as for a
  segmentation mask): the binary KL divergence of the two sigmoids at T, per
  pixel;
* anything else (a regression loss, your own loss): the mean squared difference
  of the outputs (T plays no part).

Which of these applies, and whether the outputs are logits or probabilities,
is read from the loss the student was compiled with (`outputs="auto"`), or
given.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import ops

OUTPUTS = ("auto", "logits", "probabilities", "values")
_SOFTMAX = {"categorical_crossentropy", "sparse_categorical_crossentropy"}
_SIGMOID = {"binary_crossentropy", "binary_focal_crossentropy"}
_EPSILON = 1e-7


class Distiller(keras.Model):
    """Trains `student` with `fit` on the labels and on `teacher`'s outputs.

    `fit` it like the student (same data, same compile arguments); the
    student's weights are the ones trained, in place. `PruningCallback` works
    on a `Distiller` too: it masks the student.

    Args:
        student: the model to train (usually the pruned one). Its own
            regularisation losses still apply.
        teacher: the model to learn from (usually the unpruned one); it is not
            trained and runs in inference mode.
        weight: weight of the distillation term next to the task loss.
        temperature: softening temperature T (> 0).
        outputs: `"auto"` reads from the student's compiled loss whether the
            outputs are class logits or probabilities (cross-entropy losses)
            and otherwise compares raw values; or say `"logits"`,
            `"probabilities"` or `"values"`.

    Raises:
        ValueError: for a teacher whose inputs or outputs do not match the
            student's, a weight below 0 or a temperature <= 0.
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        weight: float = 1.0,
        temperature: float = 2.0,
        outputs: str = "auto",
        **kwargs,
    ):
        check_distillation(student, teacher, weight, temperature, outputs)
        kwargs.setdefault("name", f"{student.name}_distiller")
        super().__init__(**kwargs)
        self.student = student
        # Held outside Keras' tracking: the teacher's variables and losses are
        # not the Distiller's, and the teacher itself is left as it is.
        self._teacher = _Untracked(teacher)
        self.weight, self.temperature = float(weight), float(temperature)
        self.outputs_form = outputs

    @property
    def teacher(self) -> keras.Model:
        return self._teacher.model

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        task = super().compute_loss(x, y, y_pred, sample_weight, training)
        if self.weight == 0:
            return task
        taught = self.teacher(x, training=False)
        # The Distiller is compiled with the student's loss: read it there.
        forms = output_forms(self, self.outputs_form, self.student.outputs)
        terms = [
            soft_loss(t, s, form, self.temperature)
            for t, s, form in zip(
                keras.tree.flatten(taught), keras.tree.flatten(y_pred), forms
            )
        ]
        return task + self.weight * ops.sum(ops.stack(terms))

    def get_config(self):
        raise NotImplementedError(
            "a Distiller is a training harness and is not saved: save its "
            "student (distiller.student.save(...))"
        )


@dataclass
class Distillation:
    """What `distill=` of `prune_to_tolerance` and `Staged.run` sets up: the
    teacher, the weight of the distillation term and the temperature (see
    `Distiller`)."""

    teacher: keras.Model
    weight: float = 1.0
    temperature: float = 2.0
    outputs: str = "auto"

    def harness(self, student: keras.Model) -> "Distiller":
        """A `Distiller` that trains `student` (compile it before `fit`)."""
        return Distiller(
            student, self.teacher, self.weight, self.temperature, self.outputs
        )


def as_distillation(distill, model: keras.Model) -> Distillation | None:
    """The `Distillation` that a `distill=` argument asks for, checked against
    `model` (the model about to be pruned).

    `None`/`False`: none. `True`: `model` itself teaches (its unpruned copy).
    A `keras.Model`: that teacher, weight 1, temperature 2. A `Distillation`:
    as given.
    """
    if distill is None or distill is False:
        return None
    if distill is True:
        distill = Distillation(model)
    elif isinstance(distill, keras.Model):
        distill = Distillation(distill)
    elif not isinstance(distill, Distillation):
        raise TypeError(
            "distill= takes the teacher model, True (the unpruned model "
            "teaches), or kprune.Distillation(teacher, weight=, temperature=); "
            f"got {type(distill).__name__}"
        )
    check_distillation(
        model, distill.teacher, distill.weight, distill.temperature, distill.outputs
    )
    output_forms(model, distill.outputs)  # a student without a loss fails now
    return distill


class _Untracked:
    def __init__(self, model):
        self.model = model


def check_distillation(student, teacher, weight, temperature, outputs) -> None:
    """The checks of `Distiller`'s arguments, for entry points that build one."""
    if not isinstance(teacher, keras.Model):
        raise TypeError(
            f"distill= takes the teacher, a keras.Model (usually the unpruned "
            f"model); got {type(teacher).__name__}"
        )
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        raise ValueError(
            f"the distillation weight must be a number >= 0; got {weight!r}"
        )
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or temperature <= 0
    ):
        raise ValueError(
            f"the distillation temperature must be a number > 0; got {temperature!r}"
        )
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {OUTPUTS}; got {outputs!r}")
    shapes = [
        [tuple(t.shape[1:]) for t in model.inputs] for model in (student, teacher)
    ]
    if shapes[0] != shapes[1]:
        raise ValueError(
            f"the teacher takes inputs of shape {shapes[1]} but the student "
            f"{shapes[0]}; distill from the model you pruned"
        )
    outs = [[t.shape[-1] for t in model.outputs] for model in (student, teacher)]
    if outs[0] != outs[1]:
        raise ValueError(
            f"the teacher's outputs have {outs[1]} channels and the student's "
            f"{outs[0]}; distill from the model you pruned"
        )


def output_forms(
    compiled: keras.Model, outputs: str = "auto", tensors=None
) -> list[tuple]:
    """`(kind, from_logits)` per output: kind is "softmax", "sigmoid" or
    "values".

    Args:
        compiled: the model whose compiled loss tells (with `outputs="auto"`).
        outputs: see `Distiller`.
        tensors: the symbolic outputs (default `compiled.outputs`).
    """
    tensors = compiled.outputs if tensors is None else tensors
    count = len(tensors)
    if outputs == "values":
        return [("values", False)] * count
    if outputs != "auto":
        kinds = [_kind_of_width(t.shape[-1]) for t in tensors]
        return [(k, outputs == "logits") for k in kinds]
    losses = getattr(compiled, "loss", None)
    if losses is None:
        raise ValueError(
            "distillation reads the form of the outputs from the compiled "
            "loss: compile the model first, or pass outputs="
        )
    if isinstance(losses, dict):
        names = getattr(compiled, "output_names", None) or list(losses)
        losses = [losses.get(name) for name in names]
    elif not isinstance(losses, (list, tuple)):
        losses = [losses] * count
    return [_form_of_loss(loss) for loss in losses]


def _kind_of_width(width) -> str:
    return "sigmoid" if width == 1 else "softmax"


def _form_of_loss(loss) -> tuple:
    if loss is None:
        return ("values", False)
    config = {}
    if isinstance(loss, str):
        name = getattr(keras.losses.get(loss), "__name__", loss)
    else:
        try:
            config = loss.get_config() or {}
        except (AttributeError, NotImplementedError, TypeError):
            config = {}
        name = config.get("name") or getattr(loss, "__name__", "")
    logits = bool(config.get("from_logits", False))
    if name in _SOFTMAX:
        return ("softmax", logits)
    if name in _SIGMOID:
        return ("sigmoid", logits)
    return ("values", False)


def soft_loss(teacher_out, student_out, form: tuple, temperature: float):
    """The distillation term for one output (a scalar), already times T^2."""
    kind, from_logits = form
    t = ops.cast(teacher_out, "float32")
    s = ops.cast(student_out, "float32")
    if kind == "values":
        return ops.mean(ops.square(t - s))
    if kind == "softmax":
        if not from_logits:  # log p is a logit up to a shift softmax ignores
            t, s = ops.log(ops.maximum(t, _EPSILON)), ops.log(ops.maximum(s, _EPSILON))
        log_p = ops.log_softmax(t / temperature, axis=-1)
        log_q = ops.log_softmax(s / temperature, axis=-1)
        divergence = ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)
    else:
        if not from_logits:
            t, s = _logit(t), _logit(s)
        t, s = t / temperature, s / temperature
        # binary KL(p || q) from logits, stable through log_sigmoid
        p = ops.sigmoid(t)
        divergence = p * (ops.log_sigmoid(t) - ops.log_sigmoid(s)) + (1 - p) * (
            ops.log_sigmoid(-t) - ops.log_sigmoid(-s)
        )
    return temperature**2 * ops.mean(divergence)


def _logit(p):
    p = ops.clip(p, _EPSILON, 1 - _EPSILON)
    return ops.log(p) - ops.log1p(-p)
