"""Regression with a Go-Metal builder MLP on scikit-learn's diabetes data, FP32 vs mixed.

The diabetes set (442 patients, 10 features, disease progression after one year) is bundled
with scikit-learn; nothing is downloaded. Features and target are standardized with the
training split's statistics; the model trains with loss "mse" and problem_type "regression"
once in float32 and once in mixed precision (exponential learning-rate decay, the test set as
validation data), and the evaluation report of each (`regression_report`: MAE, RMSE, R²) is
printed in the target's own units, next to the RMSE of always predicting the training mean.
``--report DIR`` (or ``--plot DIR``) writes each report as JSON with Go-Metal's regression
plots (training curves, learning rate, predicted-vs-true scatter, residuals, Q-Q) under
``DIR/PRECISION/``.

Run: python examples/regression.py [--epochs 15] [--precision mixed_bfloat16|...] [--report DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

from gometal_keras import ModelBuilder, Trainer, TrainerConfig
from gometal_keras.reporting.evalplots import plot_report
from gometal_keras.training.evaluation import regression_report

BATCH = 32


def diabetes(seed: int) -> tuple[np.ndarray, ...]:
    """Return standardized (x_train, x_test, y_train, y_test) and the target's mean and std."""
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    y_mean, y_std = y_train.mean(), y_train.std()
    return (
        ((x_train - mean) / std).astype(np.float32),
        ((x_test - mean) / std).astype(np.float32),
        ((y_train - y_mean) / y_std).astype(np.float32)[:, None],
        y_test,
        np.float32(y_mean),
        np.float32(y_std),
    )


def builder(features: int) -> ModelBuilder:
    """A small MLP as a Go-Metal builder chain: features -> 64 -> 32 -> 1."""
    return (
        ModelBuilder([BATCH, features])
        .AddDense(64, True, "dense1")
        .AddReLU("relu1")
        .AddDense(32, True, "dense2")
        .AddReLU("relu2")
        .AddDense(1, True, "output")
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Train both precisions and print their test RMSE; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="more overfits: 353 samples")
    parser.add_argument(
        "--precision",
        choices=("auto", "mixed_float16", "mixed_bfloat16"),
        default="mixed_bfloat16",
        help="precision of the second run (auto: measured; may keep float32)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--report", "--plot", metavar="DIR", help="write JSON reports and plots (PNG) here"
    )
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be a positive integer.")
    x_train, x_test, y_train, y_test, y_mean, y_std = diabetes(args.seed)
    baseline = float(np.sqrt(np.mean((y_test - y_mean) ** 2)))
    print(f"diabetes: {len(x_train)} training and {len(x_test)} test patients")
    print(f"{'predict the mean':>30} test RMSE {baseline:.2f}")
    for precision in ("float32", args.precision):
        config = TrainerConfig(
            batch_size=BATCH,
            learning_rate=1e-3,
            problem_type="regression",
            loss="mse",
            precision=precision,
            seed=args.seed,
            jit_compile=None if precision == "mixed_float16" else False,
            lr_schedule="exponential",
            lr_gamma=0.95,
        )
        trainer = Trainer(builder(x_train.shape[1]), config)
        val = (x_test, ((y_test - y_mean) / y_std).astype(np.float32)[:, None])
        run = trainer.fit(x_train, y_train, epochs=args.epochs, validation_data=val)
        predicted = trainer.predict(x_test)[:, 0] * y_std + y_mean  # in the target's units
        report = regression_report(predicted, y_test, run=run)
        m = report.metrics
        print(
            f"{precision:>14} -> {trainer.precision:<14} test RMSE {m['rmse']:.2f}  "
            f"MAE {m['mae']:.2f}  R² {m['r2']:.3f}  "
            f"final loss {run.final_loss:.4f}  training {run.total_seconds:.2f} s"
        )
        if args.report:
            folder = f"{args.report}/{precision}"
            written = plot_report(report, folder)
            report.write_json(f"{folder}/evaluation.json")
            print(f"{'':>18}report: {folder}/evaluation.json and {len(written)} plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
