"""`Predictor`: the inference engine for a saved model, a checkpoint or an ONNX file.

Go-Metal's inference engine on a trained model: load once, then ``predict`` /
``predict_proba`` / ``classify`` over any number of samples, in batches. A checkpoint
(`Trainer.save`) runs with Keras under the precision it was trained in; an ONNX file
(`Trainer.export(..., format="onnx")` or any chain `import_onnx` reads) runs on
ONNX Runtime's CPU provider in float32. Training state is never touched.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gometal_keras.data.validation import as_features
from gometal_keras.engines.objectives import to_probabilities


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
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size is {batch_size!r}; expected a positive int.")
        self._run, self.input_shape = run, tuple(int(d) for d in input_shape)
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
        return cls(run, shape, outputs_probabilities(model), names, batch_size, repr(path))

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

        def run(x: np.ndarray, batch: int) -> np.ndarray:
            parts = [
                session.run(None, {inp.name: x[i : i + batch]})[0] for i in range(0, len(x), batch)
            ]
            return np.concatenate(parts, axis=0).astype(np.float32, copy=False)

        return cls(run, inp.shape[1:], probs, names, batch_size, repr(path))

    def _check(self, x: Any) -> np.ndarray:
        shape = getattr(x, "shape", None) or np.shape(x)
        if tuple(shape[1:]) != self.input_shape or not shape[0]:
            raise ValueError(
                f"Input of shape {tuple(shape)} does not fit {self.source}; expected "
                f"(batch, {', '.join(map(str, self.input_shape))}) with batch at least 1."
            )
        return as_features(x, self.input_shape)

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
        proba = self.predict_proba(x)
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
