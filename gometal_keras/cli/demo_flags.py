"""The demo's command-line flags (the seed README's "Customization"), shared by
``gometal-keras demo`` and ``gometal-keras tune``: adding them to a parser, checking them
together (`check_demo_flags`, before the backend starts) and reading them back as the
demo's `DemoSettings` (`demo_settings`). Light: nothing here starts a backend.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from gometal_keras.core.config import PRECISIONS
from gometal_keras.core.demo_settings import MODELS, DemoSettings
from gometal_keras.core.seeds import SEED_MAX


def integer_at_least(low: int) -> Any:
    """An argparse type: an integer of at least `low` (argparse names the flag on error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer of at least {low}, got {text}")
        return value

    parse.__name__ = "integer"
    return parse


def _seed(text: str) -> int:
    """An argparse type: a seed in [0, SEED_MAX]."""
    value = integer_at_least(0)(text)
    if value > SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, {SEED_MAX}], got {text}")
    return value


def _loss(text: str) -> float:
    """An argparse type: a finite loss threshold of 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of 0 or more, got {text}")
    return value


def _layers(text: str) -> tuple[int, ...]:
    parts = text.split(",")
    if not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected positive sizes like 1024,512,256, got {text!r}")
    return tuple(int(p) for p in parts)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's flags (the seed README's "Customization") to `parser`.

    Example:
        >>> p = argparse.ArgumentParser(); add_demo_arguments(p)
        >>> p.parse_args(["--layers", "64,32"]).layers
        (64, 32)
    """
    d = DemoSettings()
    parser.add_argument("--hidden", type=integer_at_least(1), default=d.hidden,
                        help="first hidden layer size")
    parser.add_argument("--layers", type=_layers, help="hidden sizes, e.g. 1024,512,256")
    parser.add_argument("--batch-size", type=integer_at_least(1), default=d.batch_size)
    parser.add_argument("--epochs", type=integer_at_least(1), default=d.epochs)
    parser.add_argument("--samples", type=integer_at_least(1), default=d.samples)
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=d.precision,
        help="precision of phase 2 (auto: measure and keep the fastest sound one)",
    )
    parser.add_argument("--seed", type=_seed, default=d.seed)
    parser.add_argument("--early-stop", type=_loss, default=d.early_stop_loss, dest="early_stop")
    parser.add_argument(
        "--timing",
        choices=("steady", "total"),
        default=d.timing,
        help="compare steady-state time (epoch 1 excluded) or total time",
    )
    parser.add_argument(
        "--devices",
        type=integer_at_least(1),
        default=None,
        help="train data-parallel over N local devices (the batch size stays global)",
    )
    parser.add_argument(
        "--rounds", type=integer_at_least(0), default=d.rounds,
        help="interleaved epochs per phase to compare"
    )
    parser.add_argument(
        "--model", choices=MODELS, default=d.model,
        help="mlp: the seed's MLP on 784 features; transformer: a small transformer "
        "(embedding, self-attention, layer norm, feed-forward) on token sequences",
    )
    parser.add_argument("--tokens", type=integer_at_least(1), default=d.tokens,
                        help="transformer: tokens per sequence")
    parser.add_argument("--vocab", type=integer_at_least(1), default=d.vocab,
                        help="transformer: vocabulary size (at least 10, the classes)")


def check_demo_flags(args: argparse.Namespace) -> None:
    """Raise ValueError for flags that are wrong together (each alone is checked by argparse).

    Example:
        >>> p = argparse.ArgumentParser(); add_demo_arguments(p)
        >>> check_demo_flags(p.parse_args(["--batch-size", "64", "--samples", "10"]))
        Traceback (most recent call last):
        ValueError: --batch-size 64 is larger than --samples 10; expected a batch size of at \
most the sample count.
    """
    if args.batch_size > args.samples:
        raise ValueError(f"--batch-size {args.batch_size} is larger than --samples "
                         f"{args.samples}; expected a batch size of at most the sample count.")
    classes = DemoSettings().classes
    if getattr(args, "model", "mlp") == "transformer" and args.vocab < classes:
        raise ValueError(f"--vocab {args.vocab} is smaller than the {classes} classes; "
                         f"expected a vocabulary of at least {classes} tokens.")


def demo_settings(args: argparse.Namespace) -> DemoSettings:
    """The demo's `DemoSettings` from parsed demo flags (checked as `check_demo_flags` does).

    Example:
        >>> p = argparse.ArgumentParser(); add_demo_arguments(p)
        >>> demo_settings(p.parse_args(["--epochs", "3"])).epochs
        3
    """
    check_demo_flags(args)
    return DemoSettings(
        hidden=args.hidden,
        layers=args.layers,
        batch_size=args.batch_size,
        epochs=args.epochs,
        samples=args.samples,
        precision=args.precision,
        seed=args.seed,
        early_stop_loss=args.early_stop,
        timing=args.timing,
        devices=args.devices,
        rounds=args.rounds,
        model=args.model,
        tokens=args.tokens,
        vocab=args.vocab,
    )
