"""The course's data: Fashion-MNIST, Tiny Shakespeare and 唐诗三百首, found locally or downloaded.

See :mod:`aigc_course.data.sources` for where files are looked for and how they are verified.
"""

from aigc_course.data.idx import IDXFormatError, read_idx, write_idx
from aigc_course.data.images import (
    FASHION_MNIST_CLASSES,
    ImageDataset,
    load_fashion_mnist,
    load_idx_pair,
    train_val_split,
)
from aigc_course.data.sources import (
    DATASETS,
    Checksum,
    DataError,
    DataFile,
    DataNotFoundError,
    DatasetSpec,
    DatasetStatus,
    DownloadError,
    cache_dir,
    dataset_status,
    download,
    fetch,
    fill_cache,
    get_spec,
    locate,
)
from aigc_course.data.text import (
    CharTokenizer,
    Poem,
    Speech,
    load_tang_poems,
    load_tiny_shakespeare,
    parse_poems,
    parse_speeches,
    poems_corpus,
    speaker_counts,
    split_speeches,
)

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "CharTokenizer",
    "Checksum",
    "DataError",
    "DataFile",
    "DataNotFoundError",
    "DatasetSpec",
    "DatasetStatus",
    "DownloadError",
    "IDXFormatError",
    "ImageDataset",
    "Poem",
    "Speech",
    "cache_dir",
    "dataset_status",
    "download",
    "fetch",
    "fill_cache",
    "get_spec",
    "load_fashion_mnist",
    "load_tang_poems",
    "parse_poems",
    "poems_corpus",
    "load_idx_pair",
    "load_tiny_shakespeare",
    "locate",
    "parse_speeches",
    "read_idx",
    "speaker_counts",
    "split_speeches",
    "train_val_split",
    "write_idx",
]
