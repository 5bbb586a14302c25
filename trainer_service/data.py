"""Loads training images from the sources a user has: Fashion-MNIST/MNIST, IDX files, .npz, image folders.

Every loader returns uint8 images shaped (N, H, W, C). A source that cannot be found or read raises
DatasetError with one line that names what was looked for and how to supply it.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

DEBIAN_DATASETS = Path("/usr/share/datasets")
KERAS_CACHE = Path.home() / ".keras" / "datasets"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat",
                         "sandal", "shirt", "sneaker", "bag", "ankle boot")
MNIST_CLASSES = tuple(str(digit) for digit in range(10))
_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC = 2051, 2049


class DatasetError(Exception):
    """The dataset named by the user is missing or unreadable."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray | None = None  # (N,) int64
    class_names: tuple[str, ...] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (optionally gzipped): images as (N, H, W) or labels as (N,), uint8."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DatasetError(f"cannot read IDX file {path}: {error}") from None
    if len(data) < 8:
        raise DatasetError(f"{path} is too short to be an IDX file")
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes (magic {magic:#010x})")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DatasetError(f"{path} holds {len(data) - offset} bytes of data, its header says {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _find_idx(folder: Path, kind: str, split: str) -> Path | None:
    """The IDX file of a kind ('images' or 'labels') for a split ('train' or 't10k'), if present."""
    pattern = f"*{kind}-idx{3 if kind == 'images' else 1}-ubyte*"
    candidates = sorted(folder.glob(pattern))
    preferred = [c for c in candidates if c.name.startswith(split)]
    return (preferred or candidates or [None])[0]


def load_idx_folder(folder: Path, name: str | None = None, split: str = "train",
                    class_names: tuple[str, ...] | None = None) -> Dataset:
    images_path = _find_idx(folder, "images", split)
    if images_path is None:
        raise DatasetError(f"no IDX image file (*images-idx3-ubyte[.gz]) in {folder}")
    images = read_idx(images_path)
    if images.ndim != 3:
        raise DatasetError(f"{images_path} holds labels, not images")
    labels = None
    labels_path = _find_idx(folder, "labels", split)
    if labels_path is not None:
        labels = read_idx(labels_path).astype(np.int64)
        if labels.shape != (len(images),):
            raise DatasetError(f"{labels_path} has {len(labels)} labels for {len(images)} images")
    return Dataset(name or folder.name, images[..., None], labels, class_names if labels is not None else None)


def load_npz(path: Path) -> Dataset:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read {path} as an .npz file: {error}") from None
    with archive:
        keys = list(archive.keys())
        image_key = next((k for k in ("x_train", "images", "x") if k in keys), None)
        image_key = image_key or next((k for k in keys if archive[k].ndim in (3, 4)), None)
        if image_key is None:
            raise DatasetError(f"{path} has no image array (looked for x_train, images, x, or any 3-D/4-D "
                               f"array; found {', '.join(keys) or 'nothing'})")
        images = archive[image_key]
        label_key = {"x_train": "y_train", "images": "labels", "x": "y"}.get(image_key)
        labels = archive[label_key].astype(np.int64) if label_key in keys else None
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DatasetError(f"{path}:{image_key} has shape {images.shape}; expected (N, H, W) or (N, H, W, 1|3)")
    if images.dtype != np.uint8:
        if images.min() >= 0 and images.max() <= 1.0:  # floats in [0, 1]
            images = images * 255.0
        images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    if labels is not None and labels.shape != (len(images),):
        labels = None
    return Dataset(path.stem, images, labels)


def load_image_folder(folder: Path, image_size: int, channels: int | None = None) -> Dataset:
    """Every image below folder, resized to image_size²; sub-folder names become class labels."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DatasetError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    opened = []
    for path in files:
        try:
            with Image.open(path) as image:
                image.load()
                opened.append((path, image.copy()))
        except (OSError, UnidentifiedImageError) as error:
            raise DatasetError(f"cannot read image {path}: {error}") from None
    if channels is None:
        channels = 1 if all(image.mode in ("L", "1", "LA", "I", "I;16") for _, image in opened) else 3
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(image.convert(mode).resize((image_size, image_size), Image.Resampling.LANCZOS))
              for _, image in opened]
    images = np.stack(arrays).reshape(len(arrays), image_size, image_size, channels)
    class_dirs = sorted({path.parent.relative_to(folder) for path, _ in opened})
    labels = class_names = None
    if len(class_dirs) > 1:
        class_names = tuple(str(d) for d in class_dirs)
        index = {d: i for i, d in enumerate(class_dirs)}
        labels = np.array([index[path.parent.relative_to(folder)] for path, _ in opened], dtype=np.int64)
    return Dataset(folder.name, images, labels, class_names)


def _load_keras_builtin(name: str, allow_download: bool) -> Dataset:
    """MNIST or Fashion-MNIST: Debian's files, then the Keras cache, then Keras' download."""
    slug = "fashion-mnist" if name == "fashion_mnist" else "mnist"
    class_names = FASHION_MNIST_CLASSES if name == "fashion_mnist" else MNIST_CLASSES
    looked_in = []
    for folder in (DEBIAN_DATASETS / slug, KERAS_CACHE / slug):
        looked_in.append(str(folder))
        if _find_idx(folder, "images", "train") is not None:
            return load_idx_folder(folder, name, class_names=class_names)
    cached_npz = KERAS_CACHE / "mnist.npz"
    if name == "mnist":
        looked_in.append(str(cached_npz))
        if cached_npz.is_file():
            return dataclasses.replace(load_npz(cached_npz), name=name, class_names=class_names)
    hint = ("install Debian's dataset-fashion-mnist package (apt-get install dataset-fashion-mnist)"
            if name == "fashion_mnist" else "put mnist.npz in ~/.keras/datasets")
    if not allow_download:
        raise DatasetError(f"{name} not found (looked in {', '.join(looked_in)}); {hint}, "
                           "or pass --dataset PATH to IDX files, an .npz or an image folder")
    logger.info("%s not found locally (looked in %s); downloading with Keras", name, ", ".join(looked_in))
    try:
        import keras

        (images, labels), _ = getattr(keras.datasets, name).load_data()
    except Exception as error:  # any download failure is the same user-facing problem
        raise DatasetError(f"{name} not found (looked in {', '.join(looked_in)}) and the download failed "
                           f"({type(error).__name__}: {error}); {hint}, or pass --dataset PATH") from None
    return Dataset(name, images[..., None], labels.astype(np.int64), class_names)


def load_dataset(spec: str, image_size: int = 28, channels: int | None = None,
                 limit: int | None = None, allow_download: bool = True) -> Dataset:
    """Resolves a --dataset value: a builtin name, an IDX folder, an .npz file or an image folder."""
    builtin = spec.strip().lower().replace("-", "_")
    if builtin in ("fashion_mnist", "mnist"):
        dataset = _load_keras_builtin(builtin, allow_download)
    else:
        path = Path(spec).expanduser()
        if path.is_file() and path.suffix == ".npz":
            dataset = load_npz(path)
        elif path.is_dir() and _find_idx(path, "images", "train") is not None:
            dataset = load_idx_folder(path)
        elif path.is_dir():
            dataset = load_image_folder(path, image_size, channels)
        elif path.exists():
            raise DatasetError(f"{path} is neither an .npz file nor a folder of IDX files or images")
        else:
            raise DatasetError(f"dataset {spec!r} not found: expected fashion_mnist, mnist, or the path of "
                               "an IDX folder, an .npz file or an image folder")
    if limit is not None:
        dataset = dataclasses.replace(dataset, images=dataset.images[:limit],
                                      labels=None if dataset.labels is None else dataset.labels[:limit])
    if len(dataset.images) == 0:
        raise DatasetError(f"dataset {spec!r} holds no images")
    if dataset.image_shape[:2] != (image_size, image_size):
        dataset = dataclasses.replace(dataset, images=_resize(dataset.images, image_size))
    logger.info("dataset %s: %d images of %s", dataset.name, len(dataset.images), dataset.image_shape)
    return dataset


def load_test_split(spec: str, allow_download: bool = True) -> tuple[Dataset, Dataset]:
    """The labelled (train, test) splits of a dataset, for the quality judge.

    Only MNIST, Fashion-MNIST and IDX folders that hold t10k files have a test split; anything else
    raises DatasetError saying so.
    """
    builtin = spec.strip().lower().replace("-", "_")
    if builtin in ("fashion_mnist", "mnist"):
        slug = "fashion-mnist" if builtin == "fashion_mnist" else "mnist"
        class_names = FASHION_MNIST_CLASSES if builtin == "fashion_mnist" else MNIST_CLASSES
        folders = [folder for folder in (DEBIAN_DATASETS / slug, KERAS_CACHE / slug) if _has_split(folder, "t10k")]
        if folders:
            return (load_idx_folder(folders[0], builtin, "train", class_names),
                    load_idx_folder(folders[0], builtin, "t10k", class_names))
        if not allow_download:
            raise DatasetError(f"no {builtin} test split found locally and downloads are off")
        import keras

        (train_x, train_y), (test_x, test_y) = getattr(keras.datasets, builtin).load_data()
        return (Dataset(builtin, train_x[..., None], train_y.astype(np.int64), class_names),
                Dataset(builtin, test_x[..., None], test_y.astype(np.int64), class_names))
    folder = Path(spec).expanduser()
    if folder.is_dir() and _has_split(folder, "train") and _has_split(folder, "t10k"):
        return load_idx_folder(folder, split="train"), load_idx_folder(folder, split="t10k")
    raise DatasetError(f"dataset {spec!r} has no labelled test split (needs train-* and t10k-* IDX image "
                       "and label files, as MNIST and Fashion-MNIST ship)")


def _has_split(folder: Path, split: str) -> bool:
    return folder.is_dir() and all(any(path.name.startswith(split) for path in folder.glob(pattern))
                                   for pattern in ("*images-idx3-ubyte*", "*labels-idx1-ubyte*"))


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    channels = images.shape[-1]
    resized = [np.asarray(Image.fromarray(image[..., 0] if channels == 1 else image)
                          .resize((size, size), Image.Resampling.LANCZOS)) for image in images]
    return np.stack(resized).reshape(len(images), size, size, channels)
