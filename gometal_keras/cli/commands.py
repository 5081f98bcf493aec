"""The ``gometal-keras`` command (also ``python -m gometal_keras``): demo, bench and info.

Exit codes: 0 on success, 2 on a usage error (a bad flag or value), 1 on a failure, with
one line on stderr saying what went wrong; ``--debug`` prints the traceback as well.
Heavy modules (the benchmark, matplotlib) are imported only by the command that needs them.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence

from rich.console import Console

from gometal_keras.cli.demo_flags import add_demo_arguments, demo_settings
from gometal_keras.core.native_logs import import_backend

PROG = "gometal-keras"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(ValueError):
    """A flag value that is wrong before any work starts (exit code 2)."""


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """Return the command's argument parser with its ``demo``, ``bench`` and ``info`` commands.

    Args:
        prog: Program name shown in usage lines.

    Returns:
        An ``argparse.ArgumentParser``; ``parse_args`` gives a namespace with ``command``.

    Example:
        >>> build_parser().parse_args(["info"]).command
        'info'
    """
    from gometal_keras import __version__

    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Go-Metal's builder and mixed-precision trainer on Keras 3.",
        epilog=f"Run '{prog} COMMAND --help' for a command's flags.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on failure")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser(
        "demo",
        parents=[debug],
        help="train FP32, then mixed precision, and compare (Go-Metal's demo)",
        description="Train Go-Metal's demo MLP in FP32, then in mixed precision, and compare "
        "measured times and losses. Prints the seed demo's report; optionally writes it as "
        "JSON and plots it.",
    )
    add_demo_arguments(demo)
    out = demo.add_argument_group("output")
    out.add_argument("--json", metavar="PATH", help="write the whole comparison as JSON")
    out.add_argument(
        "--plot", metavar="PATH.png", help="plot loss and time per epoch (needs the plot extra)"
    )
    out.add_argument(
        "--quiet", action="store_true", help="print only the final comparison, no progress"
    )
    commands.add_parser(
        "bench",
        add_help=False,
        help="run the benchmark (flags: gometal-keras bench --help)",
    )
    info = commands.add_parser(
        "info",
        parents=[debug],
        help="backend, versions, device, precision support",
        description="Show the Keras backend, library versions, the training device and what "
        'precision="auto" would time on it.',
    )
    info.add_argument("--json", action="store_true", help="print the facts as JSON")
    import gometal_keras.cli.tune as tune
    from gometal_keras.cli.ship import add_ship_commands

    tune.add_parser(commands, [debug])
    add_ship_commands(commands, debug)  # export, predict
    return parser


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run the command line; return the exit code (the console script exits with it).

    Args:
        argv: Arguments after the program name; None reads ``sys.argv[1:]``.
        prog: Program name shown in usage and error lines.

    Returns:
        0 on success, 2 on a usage error, 1 on a failure.

    Example:
        >>> main(["--version"])
        gometal-keras 0.1.0
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        rest = [a for a in argv if a != "--debug"]
        if rest[:1] == ["bench"]:
            import_backend(debug)
            return _bench(rest[1:])
        parser = build_parser(prog)
        args = parser.parse_args(argv)  # --help and usage errors exit here, before Keras
        if args.command in ("demo", "tune"):
            try:  # the flags together (e.g. a batch larger than the samples), before Keras
                demo_settings(args)
            except ValueError as err:
                print(f"{prog} {args.command}: error: {err}", file=sys.stderr)
                return EXIT_USAGE
        import_backend(debug)  # the command's own output only: C++ log lines hidden
        if args.command == "demo":
            try:
                return _demo(args)
            except UsageError as err:
                print(f"{prog} demo: error: {err}", file=sys.stderr)
                return EXIT_USAGE
        if args.command in ("export", "predict"):
            from gometal_keras.cli.ship import run_ship_command

            return run_ship_command(args)
        if args.command == "tune":
            import gometal_keras.cli.tune as tune

            return tune.run(args)
        return _info(args)
    except SystemExit as done:  # argparse: --help, --version and usage errors
        code = done.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_FAILURE)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # every failure becomes one line and exit 1
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        if not debug:
            print(f"{prog}: run with --debug for the traceback", file=sys.stderr)
        return EXIT_FAILURE


def _one_line(err: BaseException) -> str:
    """The exception as one line: its message (first line), with its type when unusual."""
    text = " ".join(str(err).split("\n")[0].split()) or type(err).__name__
    plain = (ValueError, TypeError, ImportError, OSError, FloatingPointError)
    return text if isinstance(err, plain) else f"{type(err).__name__}: {text}"


def _bench(argv: list[str]) -> int:
    """Delegate to ``python -m gometal_keras.bench`` with the remaining arguments."""
    try:
        from gometal_keras.bench.__main__ import main as bench_main
    except ImportError as err:
        raise ImportError(f"The benchmark could not be loaded ({err}).") from err
    return int(bench_main(argv) or 0)


def _demo(args: argparse.Namespace) -> int:
    """Run the demo with progress, the report, and the JSON and plot outputs asked for."""
    from gometal_keras.reporting.demo import run_demo
    from gometal_keras.reporting.jsonreport import check_writable, demo_report, write_json
    from gometal_keras.reporting.progress import PhaseProgress
    from gometal_keras.reporting.report import Reporter

    try:
        settings = demo_settings(args)
        if args.json:
            check_writable(args.json)
        if args.plot:
            from gometal_keras.reporting.plot import check_plot_path

            check_plot_path(args.plot)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.plot:
        from gometal_keras.reporting.plot import require_matplotlib

        require_matplotlib()  # fail before training, not after
    console = Console(highlight=False)
    reporter = Reporter(console)
    if args.quiet:
        result = run_demo(settings)
        reporter.comparison(result.comparison, result.notes)
    else:
        reporter.title()
        result = run_demo(settings, reporter, lambda _, label: PhaseProgress(label, console))
    if args.json:
        path = write_json(demo_report(result), args.json)
        if not args.quiet:
            console.print(
                f"JSON report written to {path}", markup=False, highlight=False, soft_wrap=True
            )
    if args.plot:
        from gometal_keras.reporting.plot import plot_comparison

        path = plot_comparison(result.comparison, args.plot)
        if not args.quiet:
            console.print(f"Plot written to {path}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    """Print the environment facts as text or JSON."""
    from gometal_keras.reporting.environment import environment, info_lines

    facts = environment()
    if args.json:
        print(json.dumps(facts, indent=2))
        return EXIT_OK
    for line in info_lines(facts):
        print(line)
    return EXIT_OK
