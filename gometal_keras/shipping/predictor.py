"""`Predictor`: the inference engine for a saved model, a checkpoint or an ONNX file.

Go-Metal's inference engine on a trained model: load once, then ``predict`` /
``predict_proba`` / ``classify`` over any number of samples, in batches. A checkpoint
(`Trainer.save`) runs with Keras under the precision it was trained in; an ONNX file
(`Trainer.export(..., format="onnx")` or any chain `import_onnx` reads) runs on
ONNX Runtime's CPU provider in float32. Training state is never touched.

Image models say which layout they take (`Predictor.layout`): ``"NHWC"`` (channels last)
for checkpoints and our own ONNX exports, ``"NCHW"`` (channels first) for other ONNX files
such as a ``torch.onnx.export``; a wrong shape is answered with the one expected and its
layout. `predict_files` takes image files or folders instead of arrays, decodes them as the
image `DataLoader` does, gives them in the model's layout and ties each row to its file.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gometal_keras.core.integers import count
from gometal_keras.data.inputs import FileOutputs
from gometal_keras.data.validation import as_features
from gometal_keras.engines.objectives import to_probabilities

#: Image layouts: channels last (Keras, our exports) and channels first (PyTorch, ONNX's own).
NHWC, NCHW = "NHWC", "NCHW"
_LAYOUT_WORDS = {
    NHWC: "NHWC, channels last (height, width, channels), as Trainer.predict takes",
    NCHW: "NCHW, channels first (channels, height, width), as a PyTorch export takes",
}


class Predictor:
    """Batched inference over a model function with a fixed per-sample input shape.

    Args:
        run: Maps float32 samples ``(n, *input_shape)`` and a batch size to float32 outputs,
            running `batch_size` samples per model call.
        input_shape: The per-sample input shape the model takes.
        are_probabilities: Whether the outputs are probabilities (a softmax/sigmoid head).
        class_names: Names of the classes, in output order; None names them by index.
        batch_size: Samples per call of `run`.
        source: How messages name the model (its path).
        layout: ``"NHWC"`` or ``"NCHW"`` for a model of images (3-D samples); default
            NHWC for those, None for other samples.

    Attributes:
        layout: The image layout the model takes, or None (not images).

    Example:
        >>> p = Predictor(lambda x, batch: x @ np.eye(3, 2, dtype=np.float32), (3,),
        ...               class_names=["cat", "dog"])
        >>> p.classify(np.array([[0.0, 2.0, 0.0]]))
        ['dog']
    """

    def __init__(
        self,
        run: Callable[[np.ndarray, int], np.ndarray],
        input_shape: Sequence[int],
        are_probabilities: bool = False,
        class_names: Sequence[str] | None = None,
        batch_size: int = 256,
        source: str = "the model",
        layout: str | None = None,
    ) -> None:
        batch_size = count("batch_size", batch_size)
        self._run, self.input_shape = run, tuple(int(d) for d in input_shape)
        if layout not in (None, NHWC, NCHW):
            raise ValueError(f"layout is {layout!r}; expected {NHWC!r}, {NCHW!r} or None.")
        images = len(self.input_shape) == 3
        self.layout = (layout or NHWC) if images else None
        self.are_probabilities, self.batch_size, self.source = are_probabilities, batch_size, source
        self.class_names = None if class_names is None else [str(c) for c in class_names]

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        class_names: Sequence[str] | None = None,
        batch_size: int = 256,
    ) -> Predictor:
        """Load a checkpoint (`Trainer.save`) or an ONNX file for inference.

        Args:
            path: A ``.gmk`` checkpoint or an ``.onnx`` file (told apart by content).
            class_names: Names of the classes, in output order.
            batch_size: Samples per inference call.

        Returns:
            A `Predictor`.

        Raises:
            FileNotFoundError: Nothing at `path`.
            ValueError: Neither a readable checkpoint nor a readable ONNX file.

        Example:
            >>> import os, tempfile
            >>> from gometal_keras import ModelBuilder
            >>> from gometal_keras.model.onnx_export import export_onnx
            >>> model = ModelBuilder([8, 1, 4, 4]).add_conv2d(2, 3).add_dense(2).compile()
            >>> path = export_onnx(model, os.path.join(tempfile.mkdtemp(), "cnn.onnx"))
            >>> Predictor.load(path, class_names=["no", "yes"]).input_shape
            (4, 4, 1)
        """
        path = os.fspath(path)
        batch_size = count("batch_size", batch_size)  # before any file is read
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No model file at {path!r}.")
        if zipfile.is_zipfile(path):
            return cls._from_checkpoint(path, class_names, batch_size)
        return cls._from_onnx(path, class_names, batch_size)

    @classmethod
    def _from_checkpoint(cls, path: str, names: Any, batch_size: int) -> Predictor:
        import keras

        from gometal_keras.engines.objectives import outputs_probabilities
        from gometal_keras.training import checkpoint

        model, _ = checkpoint.read(path)

        def run(x: np.ndarray, batch: int) -> np.ndarray:
            out = model.predict(x, batch_size=batch, verbose=0)
            return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32)

        shape = model.input_shape[1:]
        probs = outputs_probabilities(model)
        return cls(run, shape, probs, names, batch_size, repr(path), NHWC)

    @classmethod
    def _from_onnx(cls, path: str, names: Any, batch_size: int) -> Predictor:
        from gometal_keras.model.onnx_import import read_onnx

        proto = read_onnx(path)
        try:
            import onnxruntime
        except ImportError:
            raise ImportError(
                "Running ONNX files needs onnxruntime; install it with "
                "pip install 'gometal_keras[onnx]'."
            ) from None
        session = onnxruntime.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        inp = session.get_inputs()[0]
        if any(not isinstance(d, int) for d in inp.shape[1:]):
            raise ValueError(f"{path!r} has a dynamic sample shape; expected only the batch.")
        ops = [n.op_type for n in proto.graph.node if n.op_type not in ("Transpose", "Identity")]
        probs = bool(ops) and ops[-1] in ("Softmax", "Sigmoid")
        first = next((n for n in proto.graph.node if inp.name in n.input), None)
        to_nchw = (
            first is not None
            and first.op_type == "Transpose"
            and any(a.name == "perm" and list(a.ints) == [0, 3, 1, 2] for a in first.attribute)
        )  # our export takes NHWC and turns it to ONNX's NCHW; other files take NCHW

        def run(x: np.ndarray, batch: int) -> np.ndarray:
            parts = [
                session.run(None, {inp.name: x[i : i + batch]})[0] for i in range(0, len(x), batch)
            ]
            return np.concatenate(parts, axis=0).astype(np.float32, copy=False)

        layout = NHWC if to_nchw else NCHW
        return cls(run, inp.shape[1:], probs, names, batch_size, repr(path), layout)

    def _check(self, x: Any) -> np.ndarray:
        shape = tuple(getattr(x, "shape", None) or np.shape(x))
        if shape[1:] != self.input_shape or not shape or not shape[0]:
            dims = ", ".join(map(str, self.input_shape))
            words = f": {_LAYOUT_WORDS[self.layout]}" if self.layout else ""
            hint = ""
            other = {NHWC: (0, 2, 3, 1), NCHW: (0, 3, 1, 2)}.get(self.layout or "")
            if other and len(shape) == 4 and tuple(shape[i] for i in other)[1:] == self.input_shape:
                hint = f" (these samples look {NCHW if self.layout == NHWC else NHWC}: pass "
                hint += f"x.transpose{other})"
            raise ValueError(
                f"Input of shape {shape} does not fit {self.source}; expected "
                f"(batch, {dims}) with batch at least 1{words}{hint}."
            )
        return as_features(x, self.input_shape)

    @property
    def image_size(self) -> tuple[int, int, int] | None:
        """``(height, width, channels)`` of the images the model takes, or None."""
        if self.layout is None:
            return None
        if self.layout == NCHW:
            c, h, w = self.input_shape
            return h, w, c
        h, w, c = self.input_shape
        return h, w, c

    def predict_files(
        self,
        files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        on_error: str = "raise",
    ) -> FileOutputs:
        """The model's outputs for image files: a file, a folder (its images, sub-folders
        too) or a list of them, each row tied to its file.

        Each image is decoded as the image `DataLoader` decodes (Pillow, any mode, resized
        to the model's input, scaled to [0, 1], alpha dropped), given in the model's
        `layout`. Unreadable files are found by their first and last bytes before any is
        decoded (`gometal_keras.vision.check`).

        Args:
            files: Image files and folders.
            on_error: ``"raise"`` (default): an unreadable file raises, naming it;
                ``"skip"``: it has no row and is listed in the result's ``skipped``.

        Returns:
            A `FileOutputs`: float32 outputs with ``.files`` (the file of each row) and
            ``.skipped``.

        Raises:
            ValueError: The model does not take square images of 1 or 3 channels, a path
                does not exist, or no file could be decoded.
            UnreadableImageError: A file cannot be decoded and `on_error` is ``"raise"``.

        Example:
            >>> import os, tempfile
            >>> from PIL import Image
            >>> root = tempfile.mkdtemp()
            >>> for i, shade in enumerate((0, 255)):
            ...     Image.new("L", (9, 6), shade).save(os.path.join(root, f"{i}.png"))
            >>> grey = lambda x, batch: x.reshape(len(x), -1).mean(axis=1, keepdims=True)
            >>> out = Predictor(grey, (4, 4, 1)).predict_files(root)
            >>> [os.path.basename(f) for f in out.files], out[:, 0].tolist()
            (['0.png', '1.png'], [0.0, 1.0])
        """
        from gometal_keras.vision import DataLoader, ImageFolderDataset, image_files

        size = self.image_size
        if size is None or size[0] != size[1] or size[2] not in (1, 3):
            raise ValueError(
                f"{self.source} takes samples of shape {self.input_shape}; expected a model of "
                "square images with 1 or 3 channels to predict image files."
            )
        paths = image_files(files)
        dataset = ImageFolderDataset.from_files(paths, [0] * len(paths), ["file"])
        loader = DataLoader(
            dataset, self.batch_size, False, size[0], 0, channels=size[2], on_error=on_error
        )
        outs, rows = [], []
        try:
            for x, _, names in loader.file_batches():
                x = x.transpose(0, 3, 1, 2) if self.layout == NCHW else x
                outs.append(self._run(np.ascontiguousarray(x), self.batch_size))
                rows += names
        finally:
            loader.close()
        if not outs:
            raise ValueError(
                f"None of the {len(paths)} image files could be decoded (all skipped as "
                "unreadable); expected at least one readable image."
            )
        return FileOutputs(np.concatenate(outs), rows, loader.skipped)

    def predict(self, x: Any) -> np.ndarray:
        """The model's float32 outputs for every sample of `x`, run `batch_size` at a time."""
        return self._run(self._check(x), self.batch_size)

    def predict_proba(self, x: Any) -> np.ndarray:
        """Class probabilities ``(n, classes)``: softmax of logits, or the model's own."""
        return to_probabilities(self.predict(x), self.are_probabilities)

    def classify(self, x: Any) -> list[Any]:
        """The most probable class of each sample: its name, or its index without names.

        Raises:
            ValueError: ``class_names`` does not have one name per class.
        """
        return self.classes_of(self.predict(x))

    def classes_of(self, outputs: np.ndarray) -> list[Any]:
        """`classify` of outputs the model already gave (`predict`, `predict_files`).

        Example:
            >>> p = Predictor(lambda x, batch: x, (2,), class_names=["cat", "dog"])
            >>> p.classes_of(np.array([[0.2, 0.8], [3.0, -1.0]]))
            ['dog', 'cat']
        """
        proba = to_probabilities(np.asarray(outputs), self.are_probabilities)
        best, need = proba.argmax(axis=1), proba.shape[1]
        if self.class_names is None:
            return [int(i) for i in best]
        if len(self.class_names) != need:
            raise ValueError(
                f"{len(self.class_names)} class names were given for {need} classes; "
                "expected one name per class."
            )
        return [self.class_names[i] for i in best]

    Predict = predict
