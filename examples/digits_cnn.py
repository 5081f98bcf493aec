"""A Go-Metal builder CNN on scikit-learn's handwritten digits, in float32 and mixed precision.

The digits are 1 797 grey 8x8 images bundled with scikit-learn (nothing is downloaded). The
model is built from Go-Metal's ``[batch, channels, height, width]`` shape and fed channels-last
arrays; it trains once in float32 and once under the mixed precision asked for (cosine
learning-rate schedule, the test set as validation data), and prints the evaluation report of
each (`evaluation_report(..., run=run)`, which adds the training curves to what
`Trainer.evaluate(..., report=True)` gives:
accuracy, macro F1, ROC AUC) with the measured training time. ``--report DIR`` (or
``--plot DIR``) writes each report as JSON with Go-Metal's plots (training curves, learning
rate, confusion matrix, ROC, precision-recall) under ``DIR/PRECISION/``.

Run: python examples/digits_cnn.py [--epochs 30] [--precision mixed|auto|mixed_float16|...]
     [--report DIR]

``--precision mixed`` (the default) picks the mixed policy this device runs fast (bfloat16
when it has both, float16 on Apple GPUs, bfloat16 where it has neither). XLA is off by
default: compiling this small CNN with XLA takes longer than training it on a CPU;
``--xla auto`` lets the trainer time both (mixed_float16 on a CPU always uses XLA).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from gometal_keras import ModelBuilder, Trainer, TrainerConfig, engines
from gometal_keras.planning.candidates import candidates
from gometal_keras.reporting.evalplots import plot_report
from gometal_keras.training.evaluation import evaluation_report

BATCH = 32


def digits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_train, x_test, y_train, y_test): NHWC float32 in [0, 1], 80/20 stratified."""
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]  # (1797, 8, 8, 1)
    return train_test_split(x, data.target, test_size=0.2, stratify=data.target, random_state=seed)


def builder(batchnorm: bool = False) -> ModelBuilder:
    """The CNN as a Go-Metal builder chain (input given as [batch, channels, height, width]).

    With ``batchnorm`` a BatchNorm follows the first convolution.
    """
    b = ModelBuilder([BATCH, 1, 8, 8]).AddConv2D(32, 3, 1, 1, True, "conv1")
    return (
        (b.AddBatchNorm(name="bn1") if batchnorm else b)
        .AddReLU("relu1")
        .AddConv2D(64, 3, 1, 1, True, "conv2")
        .AddReLU("relu2")
        .AddMaxPool2D(2, 2, "pool")
        .AddDense(128, True, "dense")
        .AddReLU("relu3")
        .AddDropout(0.25, "dropout")
        .AddDense(10, True, "output")
    )


def fast_mixed() -> str:
    """The mixed policy the current device runs fast (bfloat16 when both, or as fallback)."""
    found = candidates(engines.current().describe_device())
    return "mixed_float16" if "mixed_float16" in found and len(found) == 2 else "mixed_bfloat16"


def main(argv: Sequence[str] | None = None) -> int:
    """Train both precisions and print their test accuracy; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--precision",
        choices=("mixed", "auto", "mixed_float16", "mixed_bfloat16"),
        default="mixed",
        help="second run: mixed (this device's fast mixed policy, the default), auto "
        "(measured; may keep float32), or a policy",
    )
    parser.add_argument("--xla", choices=("off", "on", "auto"), default="off")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--report", "--plot", metavar="DIR", help="write JSON reports and plots (PNG) here"
    )
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be a positive integer.")
    x_train, x_test, y_train, y_test = digits(args.seed)
    print(f"digits: {len(x_train)} training and {len(x_test)} test images of 8x8")
    mixed = fast_mixed() if args.precision == "mixed" else args.precision
    cpu = engines.current().describe_device().kind == "cpu"
    for precision in ("float32", mixed):
        jit = {"off": False, "on": True, "auto": None}[args.xla]
        if precision == "mixed_float16" and cpu and jit is False:
            jit = None  # float16 on a CPU without XLA is ~100x slower (the CPU trap)
        config = TrainerConfig(
            batch_size=BATCH,
            learning_rate=2e-3,
            precision=precision,
            seed=args.seed,
            jit_compile=jit,
            lr_schedule="cosine",
            lr_t_max=args.epochs,
        )
        trainer = Trainer(builder(), config)
        run = trainer.fit(x_train, y_train, epochs=args.epochs, validation_data=(x_test, y_test))
        report = evaluation_report(trainer, x_test, y_test, run=run)
        m = report.metrics
        print(
            f"{precision:>14} -> {trainer.precision:<14} test accuracy {m['accuracy']:.2%}  "
            f"macro F1 {m['macro_f1']:.3f}  ROC AUC {m['roc_auc_ovr']:.4f}  "
            f"final loss {run.final_loss:.4f}  training {run.total_seconds:.2f} s "
            f"({run.steady_epoch_seconds * 1000:.1f} ms/epoch steady)"
        )
        if args.report:
            folder = f"{args.report}/{precision}"
            written = plot_report(report, folder)
            report.write_json(f"{folder}/evaluation.json")
            print(f"{'':>18}report: {folder}/evaluation.json and {len(written)} plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
