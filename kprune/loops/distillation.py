"""Knowledge distillation while fine-tuning a pruned model, on `keras.distillation`.

The pruned model (the student) learns from the labels and from the unpruned
model (the teacher). Keras' own `keras.distillation.Distiller` trains it, with
a distillation loss chosen from the form of the outputs, which is read from
the loss the student was compiled with (`outputs="auto"`) or given:

* class logits (a categorical cross-entropy `from_logits=True`): Keras'
  `LogitsDistillation`, the Kullback-Leibler divergence of the two softmax
  distributions at temperature T, times T^2 (Hinton et al. 2015);
* anything else without a sigmoid or softmax (a regression loss, your own):
  Keras' `FeatureDistillation` on the outputs, their mean squared difference;
* what Keras lacks, `OutputDistillation`: one probability or logit per element
  (a binary cross-entropy, as for a segmentation mask), the binary KL
  divergence of the two sigmoids at T, times T^2; class probabilities (a
  softmax output) turned back into logits first; and models whose outputs mix
  these forms.

Keras' `Distiller` weighs the two terms as `0.5 * task + 0.5 * weight * D`,
half of `task + weight * D`; with Adam, which divides out the scale of the
gradients, that trains the same way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import keras
from keras import ops

from kprune.surgery import copy_layer, rebuild

OUTPUTS = ("auto", "logits", "probabilities", "values")
_SOFTMAX = {"categorical_crossentropy", "sparse_categorical_crossentropy"}
_SIGMOID = {"binary_crossentropy", "binary_focal_crossentropy"}
_EPSILON = 1e-7
#: The weight Keras' `Distiller` gives the task loss (see the module doc).
STUDENT_LOSS_WEIGHT = 0.5


class OutputDistillation(keras.distillation.DistillationLoss):
    """The distillation term of each output by its form, what Keras' own
    losses do not cover (see the module doc).

    Args:
        forms: per output, `(kind, from_logits)` with kind `"softmax"`,
            `"sigmoid"` or `"values"` (see `output_forms`).
        temperature: the softening temperature T (> 0).
    """

    def __init__(self, forms: list[tuple], temperature: float = 2.0):
        self.forms = [tuple(f) for f in forms]
        self.temperature = float(temperature)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        terms = [
            soft_loss(t, s, form, self.temperature)
            for t, s, form in zip(
                keras.tree.flatten(teacher_outputs),
                keras.tree.flatten(student_outputs),
                self.forms,
            )
        ]
        return ops.sum(ops.stack(terms))

    def get_config(self):
        return {"forms": [list(f) for f in self.forms], "temperature": self.temperature}


@dataclass
class Distillation:
    """A teacher and how much to learn from it: what `distill=` sets up.

    Args:
        teacher: the model to learn from (usually the unpruned one); it is not
            trained and runs in inference mode.
        weight: weight of the distillation term next to the task loss.
        temperature: softening temperature T (> 0).
        outputs: `"auto"` reads from the student's compiled loss whether the
            outputs are class logits or probabilities, or one logit or
            probability per element (cross-entropy losses), and otherwise
            compares raw values; or say `"logits"`, `"probabilities"` or
            `"values"`.
    """

    teacher: keras.Model
    weight: float = 1.0
    temperature: float = 2.0
    outputs: str = "auto"

    def loss(self, student: keras.Model):
        """The `keras.distillation` loss for `student`'s outputs."""
        forms = output_forms(student, self.outputs, teacher=self.teacher)
        if all(f == ("softmax", True) for f in forms):
            # The loss object, not its name: Keras softens logits into
            # probabilities (and scales by T^2) only for a KLDivergence instance.
            return keras.distillation.LogitsDistillation(
                temperature=self.temperature, loss=keras.losses.KLDivergence()
            )
        if all(f[0] == "values" for f in forms):
            return keras.distillation.FeatureDistillation(loss="mse")
        return OutputDistillation(forms, self.temperature)

    def distiller(self, student: keras.Model) -> keras.distillation.Distiller:
        """A `keras.distillation.Distiller` that trains `student` (compile it
        like the student before `fit`)."""
        return keras.distillation.Distiller(
            teacher=self.teacher,
            student=student,
            # A list: Keras reads the weights only beside a list of losses.
            distillation_losses=[self.loss(student)],
            distillation_loss_weights=[float(self.weight)],
            student_loss_weight=STUDENT_LOSS_WEIGHT,
            name=f"{student.name}_distiller",
        )


def distiller(
    student: keras.Model,
    teacher: keras.Model,
    weight: float = 1.0,
    temperature: float = 2.0,
    outputs: str = "auto",
) -> keras.distillation.Distiller:
    """A `keras.distillation.Distiller` training `student` on the labels and
    on a copy of `teacher`'s outputs; `fit` it like the student.

    ```python
    wrapped = kprune.wrap(model)
    trainer = kprune.distiller(wrapped, teacher=model)
    trainer.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    trainer.fit(x, y, callbacks=[kprune.PruningCallback(ratio=0.5)])
    small = kprune.shrink(wrapped)
    ```

    The teacher is copied (Keras freezes the teacher it is given, and yours
    stays as it is); the student is trained in place. `PruningCallback` masks
    the student of a distiller it is fitted with.

    Args:
        student: the model to train (usually the pruned one).
        teacher: the model to learn from (usually the unpruned one).
        weight: weight of the distillation term next to the task loss.
        temperature: softening temperature T (> 0).
        outputs: `"auto"`, `"logits"`, `"probabilities"` or `"values"` (see
            `Distillation`). With `"auto"`, the student's compiled loss (or,
            before it is compiled, the teacher's) tells the form of the
            outputs.

    Raises:
        ValueError: for a teacher whose inputs or outputs do not match the
            student's, a weight below 0, a temperature <= 0, or outputs
            whose form no compiled loss tells.
    """
    settings = Distillation(teacher, weight, temperature, outputs)
    return as_distillation(settings, student).distiller(student)


def Distiller(student, teacher, weight=1.0, temperature=2.0, outputs="auto"):  # noqa: N802
    """Deprecated since kprune 0.2: `kprune.distiller`, which returns Keras'
    own `keras.distillation.Distiller`."""
    warnings.warn(
        "kprune.Distiller is deprecated since kprune 0.2 and will be removed in "
        "0.3: use kprune.distiller(student, teacher, ...), which returns a "
        "keras.distillation.Distiller",
        DeprecationWarning,
        stacklevel=2,
    )
    return distiller(student, teacher, weight, temperature, outputs)


def as_distillation(distill, model: keras.Model) -> Distillation | None:
    """The `Distillation` a `distill=` setting asks for, checked against
    `model` (the model about to be pruned), with a copy of the teacher.

    `None`/`False`: none. `True`: `model` itself teaches. A `keras.Model`:
    that teacher, weight 1, temperature 2. A `Distillation`: as given.
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
    output_forms(model, distill.outputs, teacher=distill.teacher)  # fails now
    teacher = rebuild(distill.teacher, copy_layer)
    return Distillation(teacher, distill.weight, distill.temperature, distill.outputs)


def check_distillation(student, teacher, weight, temperature, outputs) -> None:
    """The checks of a distillation's settings against its student."""
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


def output_forms(compiled: keras.Model, outputs: str = "auto", teacher=None) -> list:
    """`(kind, from_logits)` per output: kind is "softmax", "sigmoid" or
    "values".

    Args:
        compiled: the model whose compiled loss tells (with `outputs="auto"`).
        outputs: see `Distillation`.
        teacher: asked instead when `compiled` is not compiled.
    """
    tensors = compiled.outputs
    count = len(tensors)
    if outputs == "values":
        return [("values", False)] * count
    if outputs != "auto":
        kinds = ["sigmoid" if t.shape[-1] == 1 else "softmax" for t in tensors]
        return [(k, outputs == "logits") for k in kinds]
    losses = getattr(compiled, "loss", None)
    if losses is None and teacher is not None:
        losses = getattr(teacher, "loss", None)
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
