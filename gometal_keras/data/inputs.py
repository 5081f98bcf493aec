"""`BatchSource`: every input Keras `fit` takes, as one stream of numpy ``(x, y)`` batches.

`Trainer.fit`, `evaluate` and `predict` take arrays (arranged whole, `loop`) or any of
these, streamed (`streaming`):

- a `tf.data.Dataset` (read with ``as_numpy_iterator``);
- a `keras.utils.PyDataset` (indexed ``0..len-1``, then ``on_epoch_end``);
- a PyTorch ``DataLoader``, a grain data set or loader, or any iterable of batches;
- a Python generator or iterator (one pass continues across epochs);
- a `gometal_keras.vision.DataLoader` (its epoch order follows the epoch number; its
  files are checked by their first and last bytes when it is wrapped, before any step,
  and each batch can name the file of each row, `BatchSource.named_batches`).

An element is ``(x, y)``, or ``x`` alone / ``(x,)`` for `predict`; tensors of any backend
become numpy arrays. A re-iterable input starts over each epoch; an epoch ends when it is
exhausted or after ``steps_per_epoch`` steps.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np

Batch = tuple[np.ndarray, "np.ndarray | None"]


#: What TensorFlow puts before a tf.data pipeline's own message: the wrapped function's
#: node and the chain of transformations the error passed through.
_TF_WRAPPING = re.compile(
    r"\{\{function_node [^}]*\}\}\s*|Error in user-defined function passed to .*?"
    r" transformation with iterator: [\w:]+: "
)


def _first_line(message: str) -> str:
    """The first line of an error `message` with TensorFlow's wrapping taken off, short.

    Example:
        >>> _first_line("{{function_node x}} Error in user-defined function passed to "
        ...             "MapDataset:1 transformation with iterator: Iterator::Root::Map: "
        ...             "assertion failed: [record 6]\\n more")
        'assertion failed: [record 6]'
    """
    lines = _TF_WRAPPING.sub("", message).strip().splitlines()
    return lines[0][:300] if lines else "no message"


def is_stream(x: Any) -> bool:
    """Whether `x` is a stream of batches rather than an array of samples.

    Example:
        >>> is_stream(np.zeros((4, 2))), is_stream([[1.0, 2.0]]), is_stream(iter([]))
        (False, False, True)
        >>> is_stream([(np.zeros((4, 2)), np.zeros(4))])  # a list of (x, y) batches
        True
    """
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], tuple) and 1 <= len(x[0]) <= 2:
        return hasattr(x[0][0], "__array__")  # a list of (x, y) batches, not of samples
    if x is None or isinstance(x, (np.ndarray, list, tuple, str, bytes, dict)):
        return False
    if hasattr(x, "__array__") or hasattr(x, "__array_interface__"):
        return False  # a tensor of some backend: an array of samples
    return hasattr(x, "__iter__") or (hasattr(x, "__getitem__") and hasattr(x, "__len__"))


@dataclasses.dataclass
class BatchSource:
    """One input, read as numpy batches epoch after epoch.

    Attributes:
        kind: What the input is, for messages (``"tf.data.Dataset"``, ``"generator"``...).
        value: The input itself.
        one_shot: A single pass (an iterator): epochs continue where the last one stopped.
        samples: Samples per epoch when the input says so exactly, else None.
        seen: Samples the last complete epoch had (a re-iterable input), else None.
        stage: Batches per device call the last epoch chose (`streaming.stage_size`).
    """

    kind: str
    value: Any
    one_shot: bool = False
    samples: int | None = None
    seen: int | None = None
    stage: int | None = None
    _iterator: Iterator | None = dataclasses.field(default=None, repr=False)

    @property
    def restartable(self) -> bool:
        """Whether any epoch can be read at any time (its order follows its number)."""
        return not self.one_shot and callable(getattr(self.value, "set_epoch", None))

    @property
    def pixels(self) -> bool:
        """Whether the input gives decoded image bytes (`vision.DataLoader.pixel_batches`)."""
        return callable(getattr(self.value, "pixel_batches", None))

    def batches(self, epoch: int, pixels: bool = False) -> Iterator[Batch]:
        """The batches of epoch `epoch` (0-based), converted to numpy.

        Args:
            epoch: The epoch number (orders an image loader's batches).
            pixels: Where the input has them (`pixels`), give its image bytes as they
                are (``uint8``, scaled on the device by the program) instead of floats.

        Raises:
            ValueError: A batch is not ``(x, y)`` / ``x``, or the source failed to give it
                (any exception it raised); the message names the batch.
        """
        if pixels and self.pixels:
            yield from self.value.pixel_batches(epoch)
            return
        setter = getattr(self.value, "set_epoch", None)
        if callable(setter):
            setter(epoch)
        elements, index = self._elements(), 0
        while True:
            index += 1
            try:
                element = next(elements)
            except StopIteration:
                break
            except Exception as err:  # the source's own failure (a generator's RuntimeError,
                # a PyDataset's IndexError, a tf.data error): named by its batch, in one
                # sentence, like a bad batch, so the full batches before it still train
                detail = _first_line(str(err))
                raise ValueError(
                    f"Batch {index} of the {self.kind} could not be read "
                    f"({type(err).__name__}: {detail}); expected the source to give it."
                ) from None
            yield split_batch(element, f"batch {index} of the {self.kind}")
        if isinstance(self.value, keras.utils.PyDataset):
            self.value.on_epoch_end()

    @property
    def files(self) -> bool:
        """Whether the input names each row's file (`vision.DataLoader.file_batches`)."""
        return callable(getattr(self.value, "file_batches", None))

    def named_batches(self, epoch: int) -> Iterator[tuple[np.ndarray, Any, list[str] | None]]:
        """`batches` as ``(x, y, files)``: each row's file where the input names them
        (an image loader, which may skip unreadable files), else None.

        Example:
            >>> src = as_source([(np.ones((2, 3)), np.zeros(2))])
            >>> [(x.shape, files) for x, _, files in src.named_batches(0)]
            [((2, 3), None)]
        """
        if not self.files:
            for x, y in self.batches(epoch):
                yield x, y, None
            return
        for x, y, files in self.value.file_batches(epoch):
            yield np.asarray(x), np.asarray(y), list(files)

    def _elements(self) -> Iterator[Any]:
        value = self.value
        if isinstance(value, keras.utils.PyDataset):
            return (value[i] for i in range(len(value)))
        if hasattr(value, "as_numpy_iterator"):  # tf.data, without importing TensorFlow
            return iter(value.as_numpy_iterator())
        if not self.one_shot:
            return iter(value)
        if self._iterator is None:
            self._iterator = iter(value)
        return self._iterator

    def labels(self) -> np.ndarray | None:
        """Every label of an epoch when the input knows them unread (an image folder's)."""
        dataset = getattr(self.value, "dataset", None)
        labels = getattr(dataset, "labels", None) if hasattr(self.value, "set_epoch") else None
        return None if labels is None else np.asarray(labels)


class FileOutputs(np.ndarray):
    """A model's outputs over image files: an array, one row per file read, tied to its file.

    What `Trainer.predict` and `Predictor.predict_files` return for a folder: the outputs
    as a numpy array (``shape``, ``argmax``, slicing work as usual), with the file each row
    belongs to. A file left out as unreadable (``on_error="skip"``) has no row and is
    listed in `skipped`, so the rows never shift onto another file without a word.
    `files`, `labels` and `skipped` belong to this array; an array computed from it
    (a slice, a product, ``argmax``) is a plain array, or carries empty `files`.

    Attributes:
        files: The file of each row, in row order.
        labels: The label the input gave each row (an image folder's class), or None.
        skipped: The input's files that have no row.

    Example:
        >>> out = FileOutputs(np.array([[0.1, 0.9], [0.8, 0.2]]), ["a.png", "b.png"], ["c.png"])
        >>> dict(zip(out.files, out.argmax(axis=1).tolist())), out.skipped
        ({'a.png': 1, 'b.png': 0}, ('c.png',))
    """

    files: tuple[str, ...]
    labels: np.ndarray | None
    skipped: tuple[str, ...]

    def __new__(
        cls,
        outputs: Any,
        files: Sequence[str],
        skipped: Sequence[str] = (),
        labels: Any = None,
    ) -> FileOutputs:
        arr = np.asarray(outputs)
        if len(files) != len(arr) or (labels is not None and len(labels) != len(arr)):
            raise ValueError(
                f"{len(arr)} output rows were given {len(files)} files and "
                f"{'no' if labels is None else len(labels)} labels; expected one of each per row."
            )
        obj = arr.view(cls)
        obj.files, obj.skipped = tuple(str(f) for f in files), tuple(str(f) for f in skipped)
        obj.labels = None if labels is None else np.asarray(labels)
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.files, self.labels, self.skipped = (), None, ()  # set by __new__ only

    def __array_wrap__(self, arr: Any, context: Any = None, return_scalar: bool = False) -> Any:
        arr = np.asarray(arr)
        return arr[()] if return_scalar else arr

    def __getitem__(self, key: Any) -> Any:
        return np.asarray(self)[key]

    def __reduce__(self) -> tuple:
        return FileOutputs, (np.asarray(self), self.files, self.skipped, self.labels)


def as_source(x: Any, y: Any = None) -> BatchSource:
    """Wrap a stream input as a `BatchSource`; TypeError for what is not one.

    Args:
        x: The input (see the module's list).
        y: Must be None: a stream carries its own labels.

    An input with a ``check_files`` method (a `gometal_keras.vision.DataLoader`) has it
    called here: its unreadable files raise, or are left out, before any batch is read.

    Example:
        >>> src = as_source(iter([(np.ones((2, 3)), np.zeros(2))]))
        >>> src.kind, [x.shape for x, _ in src.batches(0)]
        ('iterator', [(2, 3)])
    """
    if not is_stream(x):
        raise TypeError(f"x is a {type(x).__name__}; expected an array or a stream of batches.")
    kind = _kind(x)
    if y is not None:
        raise ValueError(
            f"y was given with a {kind}, which yields its own (x, y) batches; expected y=None."
        )
    check_files = getattr(x, "check_files", None)
    if callable(check_files):  # an image loader: unreadable files answered before any step
        check_files()
    one_shot = isinstance(x, collections.abc.Iterator)  # generators: one pass only
    samples = getattr(x, "samples", None) if hasattr(x, "set_epoch") else None
    return BatchSource(kind, x, one_shot=one_shot, samples=samples)


def _kind(x: Any) -> str:
    module = type(x).__module__.split(".")[0]
    if hasattr(x, "as_numpy_iterator"):
        return "tf.data.Dataset"
    if isinstance(x, keras.utils.PyDataset):
        return "PyDataset"
    names = {"torch": "PyTorch DataLoader", "grain": "grain data set"}
    names["gometal_keras"] = "DataLoader"
    if module in names:
        return names[module]
    return "generator" if type(x).__name__ == "generator" else "iterator"


def split_batch(element: Any, where: str) -> Batch:
    """``(x, y)`` of one element as numpy arrays (y None when the element has none).

    Args:
        element: ``(x, y)``, ``(x,)`` or ``x``; any backend's tensors.
        where: Names the batch in messages (``"batch 3 of the generator"``).

    Example:
        >>> x, y = split_batch((np.ones((2, 1)), [1, 0]), "batch 1"); y
        array([1, 0])
    """
    if isinstance(element, dict):
        raise TypeError(
            f"{where.capitalize()} is a dict with keys {sorted(element)}; expected an "
            "(x, y) tuple (map dict elements to tuples first)."
        )
    if isinstance(element, (tuple, list)) and len(element) in (1, 2):
        x, y = element[0], (element[1] if len(element) == 2 else None)
    elif isinstance(element, (tuple, list)):
        raise ValueError(
            f"{where.capitalize()} has {len(element)} parts; expected (x, y) "
            "(sample weights are not supported)."
        )
    else:
        x, y = element, None
    return to_numpy(x), (None if y is None else to_numpy(y))


def to_numpy(value: Any) -> np.ndarray:
    """A host numpy array of any backend's tensor (PyTorch's moved off its device first)."""
    detach: Callable | None = getattr(value, "detach", None)
    if callable(detach) and hasattr(value, "cpu"):
        value = detach().cpu()
    return np.asarray(value)
