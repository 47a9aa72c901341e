"""Image data sets for VAEs: pixels in [0, 1] as flat float tensors, with labels and the standard split.

- ``digits`` (default): scikit-learn's bundled 8x8 digits (values 0..16, divided by 16), a fixed stratified
  split of 1347 training and 450 test images. Nothing is read from disk or the network.
- ``mnist`` and ``fashion-mnist``: 28x28, through torchvision from a local ``root`` holding
  ``root/MNIST/raw/`` (or ``root/FashionMNIST/raw/``) with the four uncompressed IDX files; the standard
  60000/10000 split. Nothing is downloaded unless ``download=True``. :func:`prepare_root` lays out a folder of
  (possibly gzipped) IDX files as such a root.

Binarization: :func:`binarize` draws x_b ~ Bernoulli(x) (dynamic binarization when redrawn each step; a test
set is binarized once, with a seed).
"""

import gzip
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError, UnknownNameError

DATASETS = ("digits", "mnist", "fashion-mnist")
_TORCHVISION = {"mnist": ("MNIST", "MNIST"), "fashion-mnist": ("FashionMNIST", "FashionMNIST")}
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class Images:
    """A split image data set: ``x`` float tensors (N, H*W) in [0, 1], ``y`` long labels (N,), image ``shape``."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    shape: tuple

    @property
    def dim(self):
        return self.shape[0] * self.shape[1]


def load(name="digits", root=None, download=False):
    """The data set ``name`` (one of :data:`DATASETS`); ``root`` and ``download`` apply to MNIST-format sets."""
    if name not in DATASETS:
        raise UnknownNameError(f"unknown image data set {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "digits":
        return _digits()
    return _torchvision(name, root, download)


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.get_default_dtype())
    y = torch.tensor(digits.target, dtype=torch.long)
    train, test = train_test_split(np.arange(len(y)), test_size=450, stratify=digits.target, random_state=0)
    return Images("digits", x[train], y[train], x[test], y[test], (8, 8))


def _torchvision(name, root, download):
    import torchvision

    folder, cls_name = _TORCHVISION[name]
    if root is None:
        raise DataError(f"{name} needs root=<folder>: put the four IDX files {', '.join(IDX_FILES)} in "
                        f"<folder>/{folder}/raw/ (vi_toolkit.images.prepare_root does it), or pass download=True")
    raw = Path(root) / folder / "raw"
    missing = [f for f in IDX_FILES if not (raw / f).is_file()]
    if missing and not download:
        raise DataError(f"{name}: missing {', '.join(missing)} in {raw}; put the uncompressed IDX files there "
                        "(vi_toolkit.images.prepare_root unpacks .gz files) or pass download=True")
    cls = getattr(torchvision.datasets, cls_name)
    try:
        parts = [cls(str(root), train=train, download=download) for train in (True, False)]
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise DataError(f"{name}: cannot read the IDX files in {raw}: {exc}") from exc
    (train_x, train_y), (test_x, test_y) = [_flat(p.data, p.targets) for p in parts]
    shape = tuple(parts[0].data.shape[1:])
    return Images(name, train_x, train_y, test_x, test_y, shape)


def _flat(data, targets):
    """uint8 images (N, H, W) -> float (N, H*W) in [0, 1]; labels as long."""
    return data.reshape(len(data), -1).to(torch.get_default_dtype()) / 255.0, targets.long()


def prepare_root(source, root, name="mnist"):
    """Lay out the IDX files in folder ``source`` (plain or ``.gz``) as ``root/<MNIST|FashionMNIST>/raw/``,
    the layout torchvision reads; returns ``root``. Raises DataError naming the files that are missing."""
    raw = Path(root) / _TORCHVISION[name][0] / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    source = Path(source)
    for file in IDX_FILES:
        if (source / file).is_file():
            shutil.copyfile(source / file, raw / file)
        elif (source / f"{file}.gz").is_file():
            with gzip.open(source / f"{file}.gz", "rb") as src, open(raw / file, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            raise DataError(f"{source} has neither {file} nor {file}.gz; it must hold the four MNIST-format IDX files")
    return Path(root)


def binarize(x, seed=0):
    """x_b ~ Bernoulli(x) elementwise, with its own generator seeded by ``seed``; x must lie in [0, 1]."""
    x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise DataError(f"binarize needs values in [0, 1], got {float(x.min()):.3g}..{float(x.max()):.3g}")
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(x.shape, generator=generator) < x).to(x.dtype)
