"""``gometal-keras tune``: time ``precision="auto"``'s candidates for a model, store the result.

The model is the demo's, given by the demo's flags (``--layers``, ``--batch-size``, ...).
The candidates are timed afresh (``decision_cache="always"``) and the decision is stored in
the decision cache (`gometal_keras.planning.decision_cache`), so that every later ``Trainer`` for
this model and device starts without trials. ``--compilation-cache DIR`` also turns on the
backend's persistent compilation cache for this process (JAX), which is off unless asked.
"""

from __future__ import annotations

import argparse
from typing import Any

from gometal_keras.cli.demo_flags import add_demo_arguments, demo_settings


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``tune`` command, with the demo's model flags, to `commands` (subparsers).

    Example:
        >>> root = argparse.ArgumentParser()
        >>> p = add_parser(root.add_subparsers(dest="command"), [])
        >>> root.parse_args(["tune", "--layers", "64,32"]).layers
        (64, 32)
    """

    parser = commands.add_parser(
        "tune",
        parents=parents,
        help='time precision="auto" for the demo model (its flags) and store the decision',
        description='Time the candidates of precision="auto" for the demo model given by the '
        "demo's flags on this device, and store the decision in the decision cache: later "
        "trainers of the same model and device start without trials.",
    )
    add_demo_arguments(parser)
    parser.add_argument(
        "--compilation-cache",
        metavar="DIR",
        help="also keep compiled programs in DIR (JAX's persistent compilation cache)",
    )
    return parser


def run(args: argparse.Namespace, print_line: Any = print) -> int:
    """Time and store the decision for the model `args` describe; print it. Returns 0."""
    from gometal_keras.planning import decision_cache
    from gometal_keras.reporting.demo import build_model, make_config
    from gometal_keras.training.trainer import Trainer

    settings = demo_settings(args)
    if args.compilation_cache:
        decision_cache.use_compilation_cache(args.compilation_cache)
    config = make_config(settings, settings.precision).replace(decision_cache="always")
    trainer = Trainer(build_model(settings), config)
    decision = trainer.decision
    print_line(f"Device:  {trainer.device.describe()}")
    if decision is None:
        print_line(f"Nothing to time: {trainer.plan.label()} is the only plan here.")
        return 0
    for c in decision.candidates:
        s = c.spread
        shown = f"{c.seconds * 1e3:.3f} ms/step ({s.low * 1e3:.3f}-{s.high * 1e3:.3f})"
        print_line(f"  {c.plan.label()}: {f'failed: {c.error}' if c.error else shown}")
    print_line(f"Chosen:  {decision.chosen.label()} (trials {decision.trial_seconds:.2f} s)")
    print_line(f"Reason:  {decision.reason}")
    print_line(f"Stored in {decision_cache.cache_dir()}")
    return 0
