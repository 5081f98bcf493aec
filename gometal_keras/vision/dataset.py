"""`ImageFolderDataset` and `CatsDogsDataset`: Go-Metal's `vision/dataset`, on files.

A data set here is a list of (image path, class index) pairs found on disk; nothing is
decoded until a `DataLoader` asks for a batch. The layout is the usual one, one folder
per class (``root/cat/*.jpg``, ``root/dog/*.jpg``); classes are numbered in sorted order
of their folder names, so the numbering does not depend on the file system.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence

import numpy as np

#: Go-Metal's default extensions (matched case-insensitively).
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class ImageFolderDataset:
    """Images in one sub-folder per class (Go-Metal's `NewImageFolderDataset`).

    Args:
        root: The folder holding one sub-folder per class.
        extensions: File endings to take (case-insensitive); default Go-Metal's
            ``.jpg .jpeg .png .bmp``.

    Raises:
        ValueError: `root` is not a folder, it has no class sub-folders, or a class folder
            holds no image (each named in the message).

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp()
        >>> for name in ("cat/a.jpg", "cat/b.png", "dog/c.jpg"):
        ...     os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
        ...     open(os.path.join(root, name), "wb").close()
        >>> ds = ImageFolderDataset(root)
        >>> len(ds), ds.class_names, ds.class_distribution()
        (3, ['cat', 'dog'], {'cat': 2, 'dog': 1})
        >>> os.path.basename(ds.get_item(2)[0]), ds.get_item(2)[1]
        ('c.jpg', 1)
    """

    def __init__(self, root: str, extensions: Sequence[str] = EXTENSIONS):
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise ValueError(f"Image folder {root!r} does not exist; expected a folder of classes.")
        classes = sorted(e.name for e in os.scandir(root) if _folder(e) and e.name[0] != ".")
        if not classes:
            raise ValueError(
                f"Image folder {root!r} has no class sub-folders; expected one folder per class "
                "(e.g. root/cat/*.jpg, root/dog/*.jpg)."
            )
        ends = tuple(e.lower() for e in extensions)
        paths, labels = [], []
        for label, name in enumerate(classes):
            found = _images(os.path.join(root, name), ends)
            if not found:
                raise ValueError(
                    f"Class folder {os.path.join(root, name)!r} holds no {'/'.join(ends)} "
                    "image; expected at least one image per class (or remove the folder)."
                )
            paths += found
            labels += [label] * len(found)
        self._set(root, paths, labels, classes)

    def _set(self, root: str, paths: list[str], labels: Iterable[int], classes: list[str]):
        self.root = root
        self.paths = list(paths)
        self.labels = np.asarray(list(labels), dtype=np.int32)
        self.class_names = list(classes)

    def _derived(self, keep: Sequence[int]) -> ImageFolderDataset:
        new = object.__new__(type(self))
        keep = list(keep)
        new._set(self.root, [self.paths[i] for i in keep], self.labels[keep], self.class_names)
        return new

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        """Number of classes (all of the folder's, even when a subset holds fewer)."""
        return len(self.class_names)

    def get_item(self, index: int) -> tuple[str, int]:
        """Return ``(image path, class index)`` of sample `index` (Go-Metal's `GetItem`)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is outside a data set of {len(self)} images.")
        return self.paths[index], int(self.labels[index])

    def class_distribution(self) -> dict[str, int]:
        """Images per class name, in class order."""
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return {name: int(c) for name, c in zip(self.class_names, counts, strict=True)}

    def split(
        self, train_ratio: float = 0.8, shuffle: bool = True, seed: int = 0
    ) -> tuple[ImageFolderDataset, ImageFolderDataset]:
        """Split into (train, validation) data sets; `train_ratio` of the images go first.

        Args:
            train_ratio: Share of images in the first part, in (0, 1).
            shuffle: Shuffle (with `seed`) before splitting, else keep file order.
            seed: The shuffle's seed, so a split is the same every run.

        Example:
            >>> ds = ImageFolderDataset.from_files(["a.png"] * 10, [0] * 5 + [1] * 5, ["x", "y"])
            >>> [len(part) for part in ds.split(0.8)]
            [8, 2]
        """
        if not 0 < train_ratio < 1:
            raise ValueError(f"train_ratio is {train_ratio!r}; expected a number in (0, 1).")
        order = np.arange(len(self))
        if shuffle:
            order = np.random.default_rng(seed).permutation(len(self))
        cut = round(train_ratio * len(self))
        return self._derived(order[:cut]), self._derived(order[cut:])

    def subset(self, indices: Sequence[int]) -> ImageFolderDataset:
        """The images at `indices`, in that order (Go-Metal's `Subset`)."""
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < len(self)]
        if bad:
            raise IndexError(f"subset index {bad[0]} is outside a data set of {len(self)} images.")
        return self._derived(indices)

    def filter_by_class(self, names: Sequence[str]) -> ImageFolderDataset:
        """The images of the classes `names` (labels keep their numbering)."""
        unknown = [n for n in names if n not in self.class_names]
        if unknown:
            raise ValueError(f"class {unknown[0]!r} is not one of {self.class_names}.")
        wanted = [self.class_names.index(n) for n in names]
        return self._derived(np.flatnonzero(np.isin(self.labels, wanted)))

    def summary(self) -> str:
        """One line: images, classes and the count per class."""
        dist = ", ".join(f"{n}: {c}" for n, c in self.class_distribution().items())
        return f"{len(self)} images in {self.num_classes} classes ({dist}) from {self.root}"

    @classmethod
    def from_files(
        cls, paths: Sequence[str], labels: Sequence[int], class_names: Sequence[str]
    ) -> ImageFolderDataset:
        """A data set of the given files and labels (no folder scan)."""
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels; expected one each.")
        ds = object.__new__(cls)
        ds._set(os.path.commonpath(paths) if paths else "", paths, labels, list(class_names))
        return ds

    Len = __len__
    GetItem = get_item
    ClassDistribution = class_distribution
    Split = split
    Subset = subset
    FilterByClass = filter_by_class
    Summary = summary


class CatsDogsDataset(ImageFolderDataset):
    """Go-Metal's cats-vs-dogs data set: classes ``cat`` (0) and ``dog`` (1).

    Takes Go-Metal's layout (``root/cat``, ``root/dog``, either case, as in Microsoft's
    PetImages ``Cat``/``Dog``) and Kaggle's flat one (``root/cat.0.jpg``, ``root/dog.0.jpg``).

    Args:
        root: The folder.
        max_samples_per_class: Keep at most this many images per class (0 = all).

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp()
        >>> for name in ("cat.1.jpg", "dog.1.jpg", "dog.2.jpg"):
        ...     open(os.path.join(root, name), "wb").close()
        >>> CatsDogsDataset(root).summary().split(" from ")[0]
        '3 images in 2 classes (cat: 1, dog: 2)'
    """

    def __init__(self, root: str, max_samples_per_class: int = 0):
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise ValueError(f"Image folder {root!r} does not exist; expected cat and dog images.")
        paths: list[str] = []
        labels: list[int] = []
        for label, name in enumerate(("cat", "dog")):
            folders = [e.path for e in os.scandir(root) if _folder(e) and e.name.lower() == name]
            found = sorted(p for f in folders for p in _images(f, EXTENSIONS))
            flat = re.compile(rf"{name}[._-]", re.IGNORECASE)
            found += sorted(p for p in _images(root, EXTENSIONS) if flat.match(os.path.basename(p)))
            if max_samples_per_class > 0:
                found = found[:max_samples_per_class]
            if not found:
                raise ValueError(
                    f"{root!r} holds no {name} image; expected {name}/*.jpg or {name}.N.jpg files."
                )
            paths += found
            labels += [label] * len(found)
        self._set(root, paths, labels, ["cat", "dog"])


def image_files(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    extensions: Sequence[str] = EXTENSIONS,
) -> list[str]:
    """The image files a user points at: files as given, folders' images under every sub-folder.

    Args:
        inputs: A file, a folder, or a list of them. A file is taken whatever its ending
            (it is decoded later); a folder gives its `extensions` files (case-insensitive),
            its sub-folders' too (hidden ones left out), in sorted order.
        extensions: File endings a folder's images have.

    Returns:
        The paths, in the order given (each folder's sorted), each once.

    Raises:
        ValueError: A path does not exist, or a folder holds no image (named).

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp()
        >>> for name in ("b.png", "cat/a.JPG", "cat/notes.txt"):
        ...     os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
        ...     open(os.path.join(root, name), "wb").close()
        >>> [os.path.relpath(p, root) for p in image_files(root)]
        ['b.png', 'cat/a.JPG']
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    ends, found = tuple(e.lower() for e in extensions), {}
    for item in items:
        path = os.fspath(item)
        if os.path.isfile(path):
            found.setdefault(path, None)
            continue
        if not os.path.isdir(path):
            raise ValueError(
                f"{path!r} does not exist; expected an image file or a folder of images."
            )
        inside = []
        for folder, subfolders, _ in os.walk(path):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            inside += _images(folder, ends)
        if not inside:
            raise ValueError(
                f"Folder {path!r} holds no {'/'.join(ends)} image; expected at least one image."
            )
        found.update(dict.fromkeys(sorted(inside)))
    if not found:
        raise ValueError("No image file was given; expected an image file or a folder of images.")
    return list(found)


def _images(folder: str, ends: tuple[str, ...]) -> list[str]:
    """Image files directly in `folder`, sorted.

    A link named like an image that leads nowhere (broken, or looping back on itself) is
    listed too: reading it then fails like any unreadable file, so the error policy names
    or skips it, instead of the folder scan stopping on it or passing over it unsaid.
    """
    return sorted(
        e.path for e in os.scandir(folder) if e.name.lower().endswith(ends) and _file_like(e)
    )


def _folder(entry: os.DirEntry) -> bool:
    """Whether `entry` is a folder (a link looping back on itself is not one)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _file_like(entry: os.DirEntry) -> bool:
    """Whether `entry` is a regular file, or a link that cannot be followed to anything."""
    try:
        if entry.is_file():
            return True
    except OSError:  # a link loop: stat gives ELOOP
        return True
    return entry.is_symlink() and not os.path.exists(entry.path)
