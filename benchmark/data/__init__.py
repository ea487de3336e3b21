"""Datasets decoded into memory, and the public entry point to them.

* :mod:`benchmark.data.image_data`: the :class:`ImageData` schema and the
  :data:`DATASETS` registry.
* :mod:`benchmark.data.sources`: the registered loaders and :func:`load_dataset`.
* :mod:`benchmark.data.decode`: finding image files and decoding them.
* :mod:`benchmark.data.cache`: the SHA-256-checked cache of decoded datasets.

Importing this package registers every built-in dataset.
"""

from benchmark.data.image_data import DATASETS, ImageData
from benchmark.data.sources import CIFAR10_CLASSES, load_dataset

__all__ = ["CIFAR10_CLASSES", "DATASETS", "ImageData", "load_dataset"]
