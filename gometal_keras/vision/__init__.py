"""Go-Metal's `vision` packages: image-folder data sets and a caching data loader.

`ImageFolderDataset` / `CatsDogsDataset` list the files (`vision.dataset`); `DataLoader`
decodes them with Pillow in parallel workers into [0, 1] channels-last batches and keeps
them in an `ImageCache` (`vision.dataloader`, `vision.cache`, `vision.decode`). None of it
needs TensorFlow, so it feeds the Trainer on the JAX and PyTorch backends as well.

Example:
    >>> from gometal_keras.vision import DataLoader, ImageFolderDataset
    >>> DataLoader.NextBatch is DataLoader.next_batch
    True
"""

from gometal_keras.vision.augment import Augmentation
from gometal_keras.vision.cache import CacheStats, ImageCache
from gometal_keras.vision.check import unreadable_files
from gometal_keras.vision.dataloader import (
    DataLoader,
    create_shared_data_loaders,
)
from gometal_keras.vision.dataset import CatsDogsDataset, ImageFolderDataset, image_files
from gometal_keras.vision.decode import UnreadableImageError, decode_image

__all__ = [
    "Augmentation",
    "CacheStats",
    "CatsDogsDataset",
    "DataLoader",
    "ImageCache",
    "ImageFolderDataset",
    "UnreadableImageError",
    "create_shared_data_loaders",
    "decode_image",
    "image_files",
    "unreadable_files",
]
