import gzip
import shutil

import numpy as np
import pytest
from PIL import Image

from trainer_service import data
from trainer_service.data import DatasetError, load_dataset


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def test_default_is_real_fashion_mnist_from_debian_files(fashion_mnist_dir):
    dataset = load_dataset("fashion_mnist", limit=100, allow_download=False)
    assert dataset.images.shape == (100, 28, 28, 1) and dataset.images.dtype == np.uint8
    assert dataset.labels is not None and set(dataset.labels) <= set(range(10))
    assert dataset.class_names[7] == "sneaker"
    assert 0 < dataset.images.mean() < 255  # real pixels, not a blank array


@pytest.mark.parametrize("compress", [True, False])
def test_idx_folder_gzipped_or_raw(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, compress)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", np.arange(12) % 3, compress)
    dataset = load_dataset(str(tmp_path))
    np.testing.assert_array_equal(dataset.images[..., 0], images)
    np.testing.assert_array_equal(dataset.labels, np.arange(12) % 3)


def test_idx_folder_copied_from_debian_package(tmp_path, fashion_mnist_dir):
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(fashion_mnist_dir / name, tmp_path / name)
    assert load_dataset(str(tmp_path), limit=10).images.shape == (10, 28, 28, 1)


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28)), compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="header says"):
        load_dataset(str(tmp_path))


def test_npz_with_keras_keys_and_float_images(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (9, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=images, y_train=np.arange(9))
    dataset = load_dataset(str(tmp_path / "mnist.npz"))
    assert dataset.images.shape == (9, 28, 28, 1) and list(dataset.labels) == list(range(9))
    np.savez(tmp_path / "floats.npz", images=images[..., None] / 255.0)
    np.testing.assert_array_equal(load_dataset(str(tmp_path / "floats.npz")).images[..., 0], images)


def test_npz_without_images_names_what_it_found(tmp_path):
    np.savez(tmp_path / "odd.npz", weights=np.zeros(3))
    with pytest.raises(DatasetError, match="found weights"):
        load_dataset(str(tmp_path / "odd.npz"))


def test_image_folder_is_resized_and_labelled_by_subfolder(tmp_path):
    for label, colour in (("cats", 40), ("dogs", 200)):
        (tmp_path / label).mkdir()
        for index in range(3):
            Image.new("RGB", (50, 40), (colour, colour, colour)).save(tmp_path / label / f"{index}.png")
    Image.new("RGB", (64, 64), (10, 20, 30)).save(tmp_path / "dogs" / "x.jpg")
    dataset = load_dataset(str(tmp_path), image_size=32)
    assert dataset.images.shape == (7, 32, 32, 3)
    assert dataset.class_names == ("cats", "dogs") and sorted(dataset.labels) == [0, 0, 0, 1, 1, 1, 1]


def test_grayscale_image_folder_has_one_channel(tmp_path):
    for index in range(2):
        Image.new("L", (28, 28), index * 100).save(tmp_path / f"{index}.png")
    assert load_dataset(str(tmp_path)).images.shape == (2, 28, 28, 1)


def test_unreadable_image_is_named(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="broken.png"):
        load_dataset(str(tmp_path))


def test_missing_sources_say_what_was_looked_for(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match="not found: expected fashion_mnist"):
        load_dataset(str(tmp_path / "nope"))
    monkeypatch.setattr(data, "DEBIAN_DATASETS", tmp_path / "debian")
    monkeypatch.setattr(data, "KERAS_CACHE", tmp_path / "keras")
    with pytest.raises(DatasetError, match="dataset-fashion-mnist") as error:
        load_dataset("fashion_mnist", allow_download=False)
    assert str(tmp_path / "debian" / "fashion-mnist") in str(error.value)
    with pytest.raises(DatasetError, match="mnist.npz"):
        load_dataset("mnist", allow_download=False)


def test_images_of_another_size_are_resized(tmp_path):
    np.savez(tmp_path / "big.npz", x=np.zeros((3, 56, 56), np.uint8))
    assert load_dataset(str(tmp_path / "big.npz"), image_size=28).images.shape == (3, 28, 28, 1)
