"""Fashion-MNIST (the course's image data set) and MNIST, as tensors or as a ``Dataset``.

Both are 28x28 grey-scale images in ten classes: 60,000 for training and 10,000 for testing.
The course holds a validation set out of the 60,000 training images (a deterministic split), so
that the test set is looked at once, at the end.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from aigc_course import files
from aigc_course.data.idx import read_idx
from aigc_course.data.sources import get_spec, locate

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CLASS_NAMES = {"fashion-mnist": FASHION_MNIST_CLASSES}

Split = Literal["train", "val", "test"]


#: The IDX files read in this process, by :func:`aigc_course.files.identity` (a file changed or
#: replaced on disk is read again), the least recently used first. Reading Fashion-MNIST's
#: training images means decompressing 47 MB (0.2 s on a laptop's core); a lesson or a test run
#: that loads the data set again skips that. At most four files: both parts of one data set.
_read_files: OrderedDict[tuple[str, int, int, int], torch.Tensor] = OrderedDict()
_READ_FILES_KEPT = 4


def _read_once(path: Path) -> torch.Tensor:
    """The array of the IDX file at ``path`` as a tensor, read at most once per process while the
    file stays the same. Shared: callers copy it before changing it."""
    key = files.identity(path)
    if key not in _read_files:
        _read_files[key] = torch.from_numpy(read_idx(path))
        while len(_read_files) > _READ_FILES_KEPT:
            _read_files.popitem(last=False)
    _read_files.move_to_end(key)
    return _read_files[key]


def _shared_pair(name: str, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`load_idx_pair`'s tensors, the images as read once per process: not to be changed in
    place (the labels are a new int64 tensor)."""
    if part not in ("train", "test"):
        raise ValueError(f"part must be 'train' or 'test', got {part!r}")
    spec = get_spec(name)
    prefix = "train" if part == "train" else "t10k"
    images = _read_once(locate(spec, f"{prefix}-images-idx3-ubyte.gz"))
    labels = _read_once(locate(spec, f"{prefix}-labels-idx1-ubyte.gz")).to(torch.int64, copy=True)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{spec.title} {part}: {images.shape[0]} images but {labels.shape[0]} labels"
        )
    return images, labels


def load_idx_pair(
    name: str = "fashion-mnist", part: Literal["train", "test"] = "train"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64 of one file pair (the
    caller's own copies)."""
    images, labels = _shared_pair(name, part)
    return images.clone(), labels


def train_val_split(n: int, val_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic random split of ``range(n)`` into train and validation indices.

    The same ``(n, val_size, seed)`` always gives the same split, on every machine, whatever the
    global random state.
    """
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}), got {val_size}")
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return permutation[val_size:].sort().values, permutation[:val_size].sort().values


class ImageDataset(Dataset):
    """Fashion-MNIST or MNIST images as floats in ``[0, 1]`` of shape ``(1, 28, 28)``, with labels.

    ``split`` is ``train`` (the training images minus the validation ones), ``val`` (``val_size``
    training images held out with ``seed``), or ``test``. ``limit`` keeps the first images only
    (for quick runs). The whole split sits in memory as ``images`` ``(N, 1, 28, 28)`` float32
    and ``labels`` ``(N,)`` int64, so lessons can also index it as tensors without a DataLoader.
    """

    def __init__(
        self,
        name: str = "fashion-mnist",
        split: Split = "train",
        *,
        val_size: int = 5_000,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        self.name, self.split = get_spec(name).name, split
        images, labels = _shared_pair(self.name, "test" if split == "test" else "train")
        if split != "test":
            train_indices, val_indices = train_val_split(len(labels), val_size, seed)
            keep = train_indices if split == "train" else val_indices
            images, labels = images[keep], labels[keep]
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        # A copy in any case (the shared tensor stays as read), then scaled in place.
        self.images = images.unsqueeze(1).to(torch.float32, copy=True).div_(255.0)
        self.labels = labels
        self.classes = CLASS_NAMES[self.name]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __repr__(self) -> str:
        return f"ImageDataset({self.name!r}, split={self.split!r}, n={len(self)})"


def load_fashion_mnist(split: Split = "train", **kwargs) -> ImageDataset:
    """Fashion-MNIST as an :class:`ImageDataset` (see there for the arguments)."""
    return ImageDataset("fashion-mnist", split, **kwargs)
