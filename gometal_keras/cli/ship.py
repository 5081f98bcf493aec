"""The ``export`` and ``predict`` commands of ``gometal-keras``: ship a trained model.

``gometal-keras export RUN.gmk MODEL.onnx`` writes a checkpoint's model as ONNX (float32,
inference mode, dynamic batch); ``gometal-keras predict MODEL INPUT.npy`` runs a checkpoint
or an ONNX file on the samples of a ``.npy`` file with `Predictor` and prints one line per
sample (or writes ``--output``). `cli.py` registers them; failures reach its one-line errors.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

#: The commands this module adds.
COMMANDS = ("export", "predict")


def add_ship_commands(commands: argparse._SubParsersAction, debug: argparse.ArgumentParser) -> None:
    """Add ``export`` and ``predict`` to the command line's subcommands.

    Example:
        >>> parser = argparse.ArgumentParser(); commands = parser.add_subparsers(dest="command")
        >>> add_ship_commands(commands, argparse.ArgumentParser(add_help=False))
        >>> parser.parse_args(["predict", "m.onnx", "x.npy", "--mode", "proba"]).mode
        'proba'
    """

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[debug], help=text, description=f"{text}.")

    export = command("export", "write a checkpoint's model as ONNX (or a TF SavedModel)")
    export.add_argument("checkpoint", help="a checkpoint file written by Trainer.save")
    export.add_argument("output", help="the file (onnx) or folder (tf_saved_model) to write")
    export.add_argument("--format", choices=("onnx", "tf_saved_model"), default="onnx")
    predict = command("predict", "run a checkpoint or ONNX model on the samples of a .npy file")
    predict.add_argument("model", help="a checkpoint (Trainer.save) or an .onnx file")
    predict.add_argument("input", help="a .npy file of samples shaped like the model's input")
    predict.add_argument(
        "--mode",
        choices=("auto", "classes", "proba", "raw"),
        default="auto",
        help="auto: classes for several outputs or a probability head, else raw outputs",
    )
    predict.add_argument("--classes", help="class names, comma-separated, in output order")
    predict.add_argument("--batch-size", type=int, default=256)
    predict.add_argument("--output", metavar="PATH.npy", help="write the results here instead")


def run_ship_command(args: argparse.Namespace) -> int:
    """Run ``export`` or ``predict`` from parsed arguments; return the exit code (0)."""
    if args.command == "export":
        from gometal_keras.training.trainer import Trainer

        Trainer.load(args.checkpoint).export(args.output, format=args.format)
        print(f"{args.format} model written to {args.output}")
        return 0
    from gometal_keras.shipping.predictor import Predictor

    if not os.path.isfile(args.input):
        raise FileNotFoundError(f"No input file at {args.input!r}.")
    try:
        x = np.load(args.input, allow_pickle=False)
    except ValueError:
        raise ValueError(f"{args.input!r} is not a .npy array file; expected np.save's.") from None
    names = args.classes.split(",") if args.classes else None
    predictor = Predictor.load(args.model, names, args.batch_size)
    outputs = predictor.predict(x)
    mode = args.mode
    if mode == "auto":
        width = outputs.reshape(len(outputs), -1).shape[1]
        mode = "classes" if width > 1 or predictor.are_probabilities else "raw"
    if mode == "classes":
        results = np.asarray(predictor.classify(x))
    else:
        results = predictor.predict_proba(x) if mode == "proba" else outputs
    if args.output:
        np.save(args.output, results)
        print(f"{len(results)} results written to {args.output}")
    else:
        for row in results:
            print(row if np.ndim(row) == 0 else " ".join(f"{v:.6g}" for v in np.ravel(row)))
    return 0
