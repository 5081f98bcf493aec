"""The ``export`` and ``predict`` commands of ``gometal-keras``: ship a trained model.

``gometal-keras export RUN.gmk MODEL.onnx`` writes a checkpoint's model as ONNX (float32,
inference mode, dynamic batch). ``gometal-keras predict MODEL INPUT...`` runs a checkpoint
or an ONNX file with `Predictor` on what a user has: image files, folders of images (their
sub-folders too), or a ``.npy`` file of samples; it prints one line per sample (an image's
line starts with its file) or writes ``--output`` (``.csv``, files named, or ``.npy``).
Every path is checked while the arguments are parsed, before Keras or TensorFlow is
imported: a missing file is a usage error (exit 2) in a fraction of a second. `cli.py`
registers the commands; failures reach its one-line errors.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from gometal_keras.cli.demo_flags import integer_at_least

#: The commands this module adds.
COMMANDS = ("export", "predict")
#: What ``--output`` writes, by ending.
OUTPUT_ENDINGS = (".csv", ".npy")


def _existing_file(what: str) -> Any:
    """An argparse ``type`` that refuses a path with no file (a usage error, exit 2)."""

    def check(path: str) -> str:
        if not os.path.isfile(path):
            raise argparse.ArgumentTypeError(f"no file at {path!r}; expected {what}")
        return path

    return check


def _output_path(path: str) -> str:
    """``--output``: a ``.csv`` or ``.npy`` path in a folder that exists."""
    if not path.lower().endswith(OUTPUT_ENDINGS):
        raise argparse.ArgumentTypeError(
            f"{path!r} does not end in .csv or .npy; expected PATH.csv (a row per sample, "
            "image files named) or PATH.npy (the results array)"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"the folder of {path!r} does not exist")
    return path


class _Inputs(argparse.Action):
    """``predict``'s inputs: each must exist; a ``.npy`` file stands alone."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        for path in values:
            if not os.path.exists(path):
                raise argparse.ArgumentError(
                    self, f"no file or folder at {path!r}; expected images, folders or a .npy file"
                )
        arrays = [p for p in values if p.lower().endswith(".npy")]
        if arrays and len(values) > 1:
            raise argparse.ArgumentError(
                self,
                f"{arrays[0]!r} is a .npy file among {len(values)} inputs; expected one "
                ".npy file alone, or image files and folders",
            )
        setattr(namespace, self.dest, list(values))


def add_ship_commands(commands: argparse._SubParsersAction, debug: argparse.ArgumentParser) -> None:
    """Add ``export`` and ``predict`` to the command line's subcommands.

    Example:
        >>> parser = argparse.ArgumentParser(); commands = parser.add_subparsers(dest="command")
        >>> add_ship_commands(commands, argparse.ArgumentParser(add_help=False))
        >>> parser.parse_args(["predict", __file__, ".", "--mode", "proba"]).mode
        'proba'
    """

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[debug], help=text, description=f"{text}.")

    export = command("export", "write a checkpoint's model as ONNX (or a TF SavedModel)")
    export.add_argument(
        "checkpoint",
        type=_existing_file("a checkpoint written by Trainer.save"),
        help="a checkpoint file written by Trainer.save",
    )
    export.add_argument("output", help="the file (onnx) or folder (tf_saved_model) to write")
    export.add_argument("--format", choices=("onnx", "tf_saved_model"), default="onnx")
    predict = command(
        "predict", "run a checkpoint or ONNX model on image files, folders or a .npy file"
    )
    predict.add_argument(
        "model",
        type=_existing_file("a checkpoint (Trainer.save) or an .onnx file"),
        help="a checkpoint (Trainer.save) or an .onnx file",
    )
    predict.add_argument(
        "input",
        nargs="+",
        action=_Inputs,
        metavar="INPUT",
        help="image files and folders of images (sub-folders too), or one .npy file of "
        "samples shaped like the model's input",
    )
    predict.add_argument(
        "--mode",
        choices=("auto", "classes", "proba", "raw"),
        default="auto",
        help="auto: classes for several outputs or a probability head, else raw outputs",
    )
    predict.add_argument("--classes", help="class names, comma-separated, in output order")
    predict.add_argument("--batch-size", type=integer_at_least(1), default=256)
    predict.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="an unreadable image: fail naming it (raise), or leave it out and name it on "
        "stderr (skip)",
    )
    predict.add_argument(
        "--output",
        type=_output_path,
        metavar="PATH.csv|PATH.npy",
        help="write the results here instead: .csv (a row per sample, with its file) or .npy",
    )


def run_ship_command(args: argparse.Namespace) -> int:
    """Run ``export`` or ``predict`` from parsed arguments; return the exit code (0)."""
    if args.command == "export":
        from gometal_keras.training.trainer import Trainer

        Trainer.load(args.checkpoint).export(args.output, format=args.format)
        print(f"{args.format} model written to {args.output}")
        return 0
    from gometal_keras.shipping.predictor import Predictor

    names = args.classes.split(",") if args.classes else None
    predictor = Predictor.load(args.model, names, args.batch_size)
    rows: list[str] | None = None
    if args.input[0].lower().endswith(".npy"):
        try:
            x = np.load(args.input[0], allow_pickle=False)
        except ValueError:
            raise ValueError(
                f"{args.input[0]!r} is not a .npy array file; expected np.save's."
            ) from None
        outputs = predictor.predict(x)
    else:
        from gometal_keras.vision import UnreadableImageError

        try:
            with warnings.catch_warnings():  # the skipped files are named below, one a line
                warnings.simplefilter("ignore", UserWarning)
                outputs = predictor.predict_files(args.input, on_error=args.on_error)
        except UnreadableImageError as err:  # the command's flag, not the Python argument
            text = str(err).replace('on_error="skip"', "--on-error skip")
            raise UnreadableImageError(text) from None
        rows = list(outputs.files)
        for path in outputs.skipped:
            print(f"skipped {path}: it cannot be decoded as an image", file=sys.stderr)
        outputs = np.asarray(outputs)
    results = _results(predictor, outputs, args.mode)
    if args.output:
        _write(args.output, results, rows)
        print(f"{len(results)} results written to {args.output}")
        return 0
    for i, row in enumerate(results):
        text = row if np.ndim(row) == 0 else " ".join(f"{v:.6g}" for v in np.ravel(row))
        print(text if rows is None else f"{rows[i]}\t{text}")
    return 0


def _results(predictor: Any, outputs: np.ndarray, mode: str) -> np.ndarray:
    """What ``--mode`` asks for, from the model's outputs (the model runs once)."""
    from gometal_keras.engines.objectives import to_probabilities

    if mode == "auto":
        width = outputs.reshape(len(outputs), -1).shape[1]
        mode = "classes" if width > 1 or predictor.are_probabilities else "raw"
    if mode == "classes":
        return np.asarray(predictor.classes_of(outputs))
    if mode == "proba":
        return to_probabilities(outputs, predictor.are_probabilities)
    return outputs


def _write(path: str, results: np.ndarray, rows: Sequence[str] | None) -> None:
    """`results` to ``.npy``, or to ``.csv`` with each row's file (or index) first."""
    if path.lower().endswith(".npy"):
        np.save(path, results, allow_pickle=False)
        return
    flat = results.reshape(len(results), -1)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        head = "file" if rows is not None else "index"
        width = flat.shape[1]
        writer.writerow([head, *(["result"] if width == 1 else [f"v{j}" for j in range(width)])])
        for i, values in enumerate(flat):
            key = rows[i] if rows is not None else i
            writer.writerow([key, *(v if isinstance(v, str) else f"{v:.6g}" for v in values)])
