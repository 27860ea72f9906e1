"""Knowledge distillation on keras.distillation: kprune.distiller,
Distillation, the losses by output form, and FineTune(distill=)."""

import keras
import numpy as np
import pytest

import kprune
from kprune.loops.distillation import OutputDistillation, output_forms, soft_loss
from tests import mnist


def small_cnn(classes=4, activation="softmax", seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(classes, activation=activation)(x))


def images(n=64, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 8, 8, 3)).astype("float32")


def kl_numpy(t, s, temperature):
    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    p, q = softmax(t / temperature), softmax(s / temperature)
    return temperature**2 * np.mean(np.sum(p * np.log(p / q), -1))


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_softmax_term_is_the_kl_divergence_at_the_temperature(temperature):
    rng = np.random.default_rng(0)
    t, s = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    got = float(soft_loss(t, s, ("softmax", True), temperature))
    assert got == pytest.approx(kl_numpy(t, s, temperature), rel=1e-4)
    # Probabilities give the same value as their logits.
    probs = [np.exp(z) / np.exp(z).sum(-1, keepdims=True) for z in (t, s)]
    again = float(soft_loss(*probs, ("softmax", False), temperature))
    assert again == pytest.approx(got, rel=1e-3)
    assert float(soft_loss(t, t, ("softmax", True), temperature)) == pytest.approx(0)


def test_sigmoid_term_is_the_binary_kl_per_pixel():
    rng = np.random.default_rng(1)
    t, s = rng.normal(size=(2, 4, 4, 1)), rng.normal(size=(2, 4, 4, 1))
    p, q = 1 / (1 + np.exp(-t / 2)), 1 / (1 + np.exp(-s / 2))
    want = 4 * np.mean(p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q)))
    assert float(soft_loss(t, s, ("sigmoid", True), 2.0)) == pytest.approx(
        want, rel=1e-4
    )
    assert float(soft_loss(t, t, ("sigmoid", True), 2.0)) == pytest.approx(0, abs=1e-6)
    values = float(soft_loss(t, s, ("values", False), 2.0))
    assert values == pytest.approx(np.mean((t - s) ** 2), rel=1e-5)


@pytest.mark.parametrize(
    "loss, form",
    [
        ("sparse_categorical_crossentropy", ("softmax", False)),
        (
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            ("softmax", True),
        ),
        (keras.losses.CategoricalCrossentropy(), ("softmax", False)),
        (keras.losses.BinaryCrossentropy(from_logits=True), ("sigmoid", True)),
        ("binary_crossentropy", ("sigmoid", False)),
        ("mse", ("values", False)),
        (lambda y, p: keras.ops.mean(p), ("values", False)),
    ],
)
def test_the_form_of_the_outputs_is_read_from_the_compiled_loss(loss, form):
    model = small_cnn()
    model.compile("adam", loss=loss)
    assert output_forms(model) == [form]


def test_distilling_pulls_the_student_towards_the_teacher():
    teacher, x = small_cnn(seed=1), images(256)
    y = np.zeros(len(x), "int64")  # labels that say nothing about the teacher
    gaps = {}
    for weight in (0.0, 5.0):
        student = small_cnn(seed=2)
        student.compile("adam", "sparse_categorical_crossentropy")
        distiller = kprune.distiller(student, teacher, weight=weight, temperature=1.0)
        assert isinstance(distiller, keras.distillation.Distiller)
        distiller.compile(
            keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy"
        )
        distiller.fit(x, y, epochs=15, batch_size=64, verbose=0)
        t = np.log(teacher.predict(x, verbose=0))
        s = np.log(student.predict(x, verbose=0))
        gaps[weight] = kl_numpy(t, s, 1.0)
    assert gaps[5.0] < 0.5 * gaps[0.0], gaps


def test_the_teacher_is_neither_trained_nor_changed():
    """Keras' Distiller freezes the teacher it is given; kprune gives it a
    copy, so the model passed as teacher keeps its weights and flags."""
    teacher, student = small_cnn(seed=1), small_cnn(seed=2)
    teacher.layers[1].trainable = False  # a flag of the user's own
    teacher.compile("adam", "sparse_categorical_crossentropy")  # tells the form
    before = [w.copy() for w in teacher.get_weights()]
    distiller = kprune.distiller(student, teacher)
    distiller.compile("adam", "sparse_categorical_crossentropy")
    assert len(distiller.trainable_weights) == len(student.trainable_weights)
    distiller.fit(images(), np.zeros(64, "int64"), epochs=1, verbose=0)
    assert teacher.trainable and not teacher.layers[1].trainable
    assert teacher.layers[2].trainable
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "activation, loss, kind",
    [
        (None, keras.losses.SparseCategoricalCrossentropy(from_logits=True), "Logits"),
        (None, "mse", "Feature"),
        ("softmax", "sparse_categorical_crossentropy", "Output"),
        (None, keras.losses.BinaryCrossentropy(from_logits=True), "Output"),
    ],
)
def test_keras_losses_where_they_fit_and_kprunes_where_keras_has_none(
    activation, loss, kind
):
    """Class logits and plain values use keras.distillation's own losses;
    probabilities and one logit per pixel, which Keras does not cover, use
    OutputDistillation. All of them give the loss kprune 0.1 computed."""
    classes = 1 if "Binary" in type(loss).__name__ else 4
    student = small_cnn(classes, activation, seed=2)
    student.compile("adam", loss)
    teacher = small_cnn(classes, activation, seed=1)
    settings = kprune.Distillation(teacher, temperature=3.0)
    chosen = settings.loss(student)
    assert type(chosen).__name__.startswith(kind)
    x = images(8)
    t, s = teacher(x), student(x)
    form = output_forms(student)[0]
    want = float(soft_loss(t, s, form, 3.0))
    assert float(chosen.compute_loss(t, s)) == pytest.approx(want, rel=1e-3, abs=1e-6)


def test_the_distillation_loss_saves_its_settings():
    loss = OutputDistillation([("sigmoid", True)], temperature=3.0)
    again = OutputDistillation(**loss.get_config())
    assert again.forms == loss.forms and again.temperature == 3.0


@pytest.mark.parametrize(
    "teacher, kwargs, error, message",
    [
        ("other", {}, ValueError, "teacher's outputs have"),
        ("same", {"weight": -1}, ValueError, "weight must be a number >= 0"),
        ("same", {"temperature": 0}, ValueError, "temperature must be a number > 0"),
        ("same", {"outputs": "logit"}, ValueError, "outputs must be one of"),
        ("none", {}, TypeError, "keras.Model"),
        ("plain", {}, ValueError, "compile the model first, or pass outputs="),
    ],
)
def test_bad_distiller_arguments(teacher, kwargs, error, message):
    student = small_cnn()
    if teacher != "plain":
        student.compile("adam", "sparse_categorical_crossentropy")
    teacher = {
        "other": small_cnn(classes=3),
        "same": small_cnn(),
        "none": "m",
        "plain": small_cnn(),
    }[teacher]
    with pytest.raises(error, match=message):
        kprune.distiller(student, teacher, **kwargs)


def test_the_name_of_kprune_0_1_still_builds_a_distiller():
    student = small_cnn()
    student.compile("adam", "sparse_categorical_crossentropy")
    with pytest.warns(DeprecationWarning, match="kprune.distiller"):
        made = kprune.Distiller(student, small_cnn())
    assert isinstance(made, keras.distillation.Distiller)


@pytest.fixture(scope="module")
def trained():
    (x, y), _, _ = mnist.data()
    keras.utils.set_random_seed(0)
    model = mnist.cnn(filters=(8, 16))
    model.fit(x[:1024], y[:1024], epochs=1, batch_size=64, verbose=0)
    return model


def test_prune_to_tolerance_distills_from_the_unpruned_model(trained, monkeypatch):
    train, val, _ = mnist.data()
    train = (train[0][:256], train[1][:256])
    val = (val[0][:128], val[1][:128])
    made = []
    real = kprune.Distillation.distiller

    def spy(self, student):
        made.append(self)
        return real(self, student)

    monkeypatch.setattr(kprune.Distillation, "distiller", spy)
    small, report = kprune.prune_to_tolerance(
        trained, train, val, tolerance=1.0, step=0.3, max_rounds=2,
        tuning=kprune.FineTune(distill=True), verbose=0,
    )  # fmt: skip
    assert len(made) == 2
    # One copy of the unpruned model teaches every round; the model stays put.
    assert made[0].teacher is made[1].teacher and made[0].teacher is not trained
    np.testing.assert_array_equal(
        made[0].teacher.get_weights()[0], trained.get_weights()[0]
    )
    assert trained.trainable
    assert small.count_params() < trained.count_params()
    # Staged.run takes it too, with a weight and a temperature.
    staged = kprune.Staged([("l1", 1)], step=0.3)
    teacher = kprune.Distillation(trained, weight=0.5, temperature=4.0)
    staged.run(trained, train, val, tuning=kprune.FineTune(distill=teacher), verbose=0)
    assert len(made) == 3 and made[2].weight == 0.5


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"fn": lambda m: m}, "fit a kprune.distiller"),
        ({"epochs": 0}, "there is none to do"),
        ({"distill": "teacher"}, "distill= takes the teacher"),
    ],
)
def test_distill_that_would_be_ignored_raises(trained, settings, message):
    train, val, _ = mnist.data()
    settings = {"distill": True, **settings}
    error = TypeError if settings["distill"] == "teacher" else ValueError
    with pytest.raises(error, match=message):
        kprune.prune_to_tolerance(
            trained, train, val, tuning=kprune.FineTune(**settings), verbose=0
        )


def test_the_callback_masks_the_student_of_a_distiller(trained):
    (x, y), _, _ = mnist.data()
    wrapped = kprune.wrap(trained, init="l1")
    distiller = kprune.distiller(wrapped, trained)
    mnist.compile_model(distiller)
    callback = kprune.PruningCallback(ratio=0.5, end_epoch=1, criterion="l1")
    distiller.fit(x[:256], y[:256], epochs=2, verbose=0, callbacks=[callback])
    kept = kprune.masks_plan(wrapped)
    assert kept.channels_after == pytest.approx(0.5 * kept.channels_before, abs=2)


def test_a_distiller_is_compiled_like_its_student_outside_pytest_too():
    """Keras' Distiller compiles by its own `compile`; from a config it only
    warns and stays uncompiled (a plain script then failed in `fit`)."""
    import warnings

    from kprune.keras_graph import compile_like, compile_settings

    student = small_cnn()
    student.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    trainer = kprune.distiller(student, small_cnn())
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as outside pytest: no error
        compile_like(trainer, compile_settings(student))
    assert trainer.compiled
    trainer.fit(images(), np.zeros(64, "int64"), epochs=1, verbose=0)
