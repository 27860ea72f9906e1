"""Knowledge distillation: kprune.Distiller, Distillation and distill=."""

import keras
import numpy as np
import pytest

import kprune
from kprune.distillation import output_forms, soft_loss
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
        distiller = kprune.Distiller(student, teacher, weight=weight, temperature=1.0)
        distiller.compile(
            keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy"
        )
        distiller.fit(x, y, epochs=15, batch_size=64, verbose=0)
        t = np.log(teacher.predict(x, verbose=0))
        s = np.log(student.predict(x, verbose=0))
        gaps[weight] = kl_numpy(t, s, 1.0)
    assert gaps[5.0] < 0.5 * gaps[0.0], gaps


def test_the_teacher_is_neither_trained_nor_changed():
    teacher, student = small_cnn(seed=1), small_cnn(seed=2)
    before = [w.copy() for w in teacher.get_weights()]
    distiller = kprune.Distiller(student, teacher)
    distiller.compile("adam", "sparse_categorical_crossentropy")
    assert len(distiller.trainable_weights) == len(student.trainable_weights)
    distiller.fit(images(), np.zeros(64, "int64"), epochs=1, verbose=0)
    assert teacher.trainable
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "teacher, kwargs, error, message",
    [
        ("other", {}, ValueError, "teacher's outputs have"),
        ("same", {"weight": -1}, ValueError, "weight must be a number >= 0"),
        ("same", {"temperature": 0}, ValueError, "temperature must be a number > 0"),
        ("same", {"outputs": "logit"}, ValueError, "outputs must be one of"),
        ("none", {}, TypeError, "keras.Model"),
    ],
)
def test_bad_distiller_arguments(teacher, kwargs, error, message):
    student = small_cnn()
    teacher = {"other": small_cnn(classes=3), "same": small_cnn(), "none": "m"}[teacher]
    with pytest.raises(error, match=message):
        kprune.Distiller(student, teacher, **kwargs)


def test_a_distiller_is_not_saved_by_mistake():
    distiller = kprune.Distiller(small_cnn(), small_cnn())
    with pytest.raises(NotImplementedError, match="save its student"):
        distiller.get_config()


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
    real = kprune.Distillation.harness

    def spy(self, student):
        made.append(self.teacher)
        return real(self, student)

    monkeypatch.setattr(kprune.Distillation, "harness", spy)
    small, report = kprune.prune_to_tolerance(
        trained, train, val, tolerance=1.0, step=0.3, max_rounds=2,
        distill=True, verbose=0,
    )  # fmt: skip
    assert len(made) == 2 and all(t is trained for t in made)
    assert small.count_params() < trained.count_params()
    # Staged.run takes it too, with a weight and a temperature.
    staged = kprune.Staged([("l1", 1)], step=0.3)
    teacher = kprune.Distillation(trained, weight=0.5, temperature=4.0)
    staged.run(trained, train, val, verbose=0, distill=teacher)
    assert len(made) == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fine_tune_fn": lambda m: m}, "fit a kprune.Distiller"),
        ({"fine_tune_epochs": 0}, "needs fine-tuning"),
        ({"distill": "teacher"}, "distill= takes the teacher"),
    ],
)
def test_distill_that_would_be_ignored_raises(trained, kwargs, message):
    train, val, _ = mnist.data()
    kwargs = {"distill": True, **kwargs}
    error = TypeError if kwargs["distill"] == "teacher" else ValueError
    with pytest.raises(error, match=message):
        kprune.prune_to_tolerance(trained, train, val, verbose=0, **kwargs)


def test_the_callback_masks_the_student_of_a_distiller(trained):
    (x, y), _, _ = mnist.data()
    wrapped = kprune.wrap(trained, init="l1")
    distiller = kprune.Distiller(wrapped, trained)
    mnist.compile_model(distiller)
    callback = kprune.PruningCallback(ratio=0.5, end_epoch=1, criterion="l1")
    distiller.fit(x[:256], y[:256], epochs=2, verbose=0, callbacks=[callback])
    kept = kprune.masks_plan(wrapped)
    assert kept.channels_after == pytest.approx(0.5 * kept.channels_before, abs=2)
