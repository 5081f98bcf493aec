"""Console reports in the format of the Go-Metal mixed-precision demo.

`Reporter` prints the demo's blocks (title, phase headers, epoch tables, the performance
comparison and its summary) with rich. It only reads `TrainingRun` and `Comparison` records;
it never trains. On a terminal it uses colour; otherwise it writes plain text. When the
console's encoding cannot carry emoji they are replaced by ASCII tags (see `EMOJI_ASCII`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.text import Text

from gometal_keras.planning.decision import Decision
from gometal_keras.reporting.compare import (
    BASIS_PER_EPOCH,
    Comparison,
    ConvergenceVerdict,
    Outcome,
    SpeedupVerdict,
)
from gometal_keras.reporting.text import (
    EMOJI_ASCII,
    can_encode,
    epoch_rows,
    label_for,
    seconds_text,
)
from gometal_keras.training.memory import describe
from gometal_keras.training.record import TrainingRun


class Reporter:
    """Prints the demo's report blocks to a rich console.

    Args:
        console: Where to print; a new ``Console(highlight=False)`` when ``None``.
        plain: ``True`` for text without colour, ``False`` for colour; ``None`` (auto) is
            plain when the console is not a terminal or cannot encode emoji.
        emoji: Whether to print emoji; ``None`` (auto) when the console's encoding can
            encode them. Without emoji, `EMOJI_ASCII` tags are printed instead.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> Reporter(Console(file=out, width=100)).title("Demo")
        >>> out.getvalue().splitlines()[1]
        '======='
    """

    def __init__(
        self, console: Console | None = None, plain: bool | None = None, emoji: bool | None = None
    ) -> None:
        self.console = console if console is not None else Console(highlight=False)
        encodable = can_encode(self.console.encoding)
        self.emoji = encodable if emoji is None else emoji
        self.plain = (not self.console.is_terminal or not encodable) if plain is None else plain

    def _render(self, text: str) -> str:
        """Replace emoji by ASCII tags when needed and drop what the encoding cannot carry."""
        if not self.emoji:
            for icon, tag in EMOJI_ASCII.items():
                text = text.replace(icon, tag)
            text = text.replace("⚠", EMOJI_ASCII["⚠️"])
        encoding = self.console.encoding
        if not can_encode(encoding):
            with contextlib.suppress(LookupError):
                text = text.encode(encoding, "replace").decode(encoding)
        return text

    def _print(self, text: str = "", style: str = "") -> None:
        """Print one line as literal text (no markup, no emoji codes, no highlighting)."""
        line = Text(self._render(text), style="" if self.plain else style)
        self.console.print(line, markup=False, emoji=False, highlight=False, soft_wrap=True)

    def _heading(self, text: str, style: str = "bold cyan") -> None:
        """Print a heading underlined with '=' to its displayed width."""
        self._print(text, style)
        self._print("=" * Text(self._render(text)).cell_len, style)

    def title(self, name: str = "gometal_keras Mixed Precision Training Demo") -> None:
        """Print the demo title, underlined, and a blank line.

        Args:
            name: Title text.

        Example:
            >>> import io
            >>> out = io.StringIO()
            >>> Reporter(Console(file=out, width=100)).title("Demo")
            >>> out.getvalue().splitlines()[0]
            '🚀 Demo'
        """
        self._heading(f"🚀 {name}", "bold")
        self._print()

    def phase_header(
        self, index: int, label: str, config: Mapping[str, object], title: str | None = None
    ) -> None:
        """Print a phase heading, its configuration and "Starting training...".

        Args:
            index: Phase number; phase 1 is the baseline, later phases mixed precision.
            label: Precision label, e.g. ``"FP32"`` (see `label_for`).
            config: Human-readable setting names and values, e.g. ``{"Batch Size": 64}``.
            title: Heading after "Phase N: "; default ``"<label> Baseline Training"`` for
                phase 1 and ``"<label> Mixed Precision Training"`` otherwise.

        Example:
            >>> import io
            >>> out = io.StringIO()
            >>> Reporter(Console(file=out, width=100)).phase_header(1, "FP32", {"Batch Size": 64})
            >>> out.getvalue().splitlines()[3]
            '  Batch Size: 64'
        """
        icon = "📊" if index == 1 else "⚡"
        kind = "Baseline" if index == 1 else "Mixed Precision"
        self._heading(f"{icon} Phase {index}: {title or f'{label} {kind} Training'}")
        self._print(f"{label} Training Configuration:")
        for key, value in config.items():
            self._print(f"  {key}: {value}")
        self._print()
        self._print("Starting training...")

    def phase_result(self, run: TrainingRun) -> None:
        """Print a run's epoch table, how it ran, its precision choice and any early stop.

        Args:
            run: The finished run.

        Example:
            >>> import io
            >>> out = io.StringIO()
            >>> reporter = Reporter(Console(file=out, width=100))
            >>> reporter.phase_result(TrainingRun("float32", [0.5], [0.1]))
            >>> out.getvalue().splitlines()[2]
            '    1 | 0.500000 |   100.00'
        """
        self._print("Epoch | Loss     | Time (ms)", "bold")
        self._print("------|----------|----------")
        for epoch in epoch_rows(run.epochs_run):
            seconds = run.epoch_seconds[epoch - 1] if epoch <= len(run.epoch_seconds) else math.nan
            self._print(f"{epoch:5d} | {run.losses[epoch - 1]:8.6f} | {seconds * 1000:8.2f}")
        parts = [f"Precision: {run.precision.value}", f"Device: {run.device}"]
        if run.loop:
            parts.append(f"Loop: {run.loop}")
        self._print("  ".join(parts))
        self._decision(run.decision)
        if run.stopped_early:
            self._print(f"Stopped early at epoch {run.epochs_run} (loss below threshold)", "yellow")
        self._print()

    def _decision(self, decision: Decision | None) -> None:
        """Print a measured choice: each timed plan's ms/step, the one kept, and why."""
        if decision is None:
            return
        if decision.candidates:
            self._print("Precision candidates (measured step time):")
            width = max(len(c.plan.label()) for c in decision.candidates)
            for c in decision.candidates:
                shown = f"{c.seconds * 1000:8.2f} ms/step" if c.sound else "rejected"
                if c.sound and len(c.samples) > 1:
                    s, n = c.spread, len(c.samples)
                    shown += f" (median; {s.low * 1e3:.3f}-{s.high * 1e3:.3f}, {n} rounds)"
                shown = f"failed: {c.error}" if c.error else shown
                mark = "  <- chosen" if c.plan == decision.chosen else ""
                self._print(f"  {c.plan.label():<{width}} | {shown}{mark}")
        self._print(f"Chosen: {decision.chosen.label()}")
        trials = {"cache": "none (cached decision)", "rule": "none (by rule)"}
        if decision.origin in trials or decision.trial_seconds:
            self._print(f"Trials: {trials.get(decision.origin, f'{decision.trial_seconds:.2f} s')}")
        self._print(f"Reason: {decision.reason}")

    def comparison(self, cmp: Comparison, notes: Sequence[str] = ()) -> None:
        """Print the performance comparison, the summary and the closing line.

        Args:
            cmp: The comparison to print (from `compare_runs`).
            notes: Extra summary lines from the caller, e.g. why mixed precision cannot
                help on this device.

        Example:
            >>> import io
            >>> from gometal_keras.reporting.compare import compare_runs
            >>> fp32 = TrainingRun("float32", [2.0, 0.5, 0.4], [1.0, 0.2, 0.2])
            >>> fp16 = TrainingRun("mixed_float16", [2.0, 0.5, 0.41], [1.5, 0.1, 0.1])
            >>> out = io.StringIO()
            >>> Reporter(Console(file=out, width=100)).comparison(compare_runs(fp32, fp16))
            >>> [line for line in out.getvalue().splitlines() if "Speedup" in line]
            ['  Speedup: +100.0%']
        """
        base, cand = cmp.baseline, cmp.candidate
        b, c = label_for(base.precision), label_for(cand.precision)
        if b == c:
            b, c = f"{b} (baseline)", f"{c} (candidate)"
        who = "mixed precision" if cand.precision.mixed else c
        self._heading("📈 Performance Comparison")
        self._print()
        steady = cmp.timing == "steady"
        # Each phase's own times: the figure when no rounds ran, else only what each phase
        # took as it ran, one after the other (drift and warm-up favour one of them).
        aside = " as each phase ran, one after the other; not the comparison" if cmp.rounds else ""
        if cmp.basis == BASIS_PER_EPOCH:
            scope = "steady state, epoch 1 excluded" if steady else "total, compilation included"
            counts = f"runs of {base.epochs_run} and {cand.epochs_run} epochs"
            self._print(f"Time per Epoch ({scope}; {counts}{';' if aside else ''}{aside}):")
            self._print(f"  {b}: {cmp.baseline_seconds * 1000:.2f} ms/epoch")
            self._print(f"  {c}: {cmp.candidate_seconds * 1000:.2f} ms/epoch")
        else:
            n = base.epochs_run
            scope = f"steady state, epochs 2-{n}" if steady and n > 1 else "total"
            self._print(f"Training Time ({scope}{';' if aside else ''}{aside}):")
            shown = seconds_text(cmp.baseline_seconds, cmp.candidate_seconds)
            self._print(f"  {b}: {shown[0]} seconds")
            self._print(f"  {c}: {shown[1]} seconds")
        if cmp.rounds:
            self._print(f"Interleaved Epochs ({cmp.rounds} rounds, {b} and {c} in turn):")
            for label, s in zip((b, c), cmp.round_spreads(), strict=True):
                ms = f"{s.median * 1e3:.2f} ms/epoch (median; {s.low * 1e3:.2f}-{s.high * 1e3:.2f})"
                self._print(f"  {label}: {ms}")
        style = {Outcome.FASTER: "green"}.get(cmp.outcome, "yellow")
        slower = f" ({who} was slower)" if cmp.outcome is Outcome.SLOWER else ""
        self._print(f"  Speedup: {cmp.headline()}{slower}", style)
        if steady:
            self._print()
            self._print("Total Time (including compilation; as each phase ran, not a comparison):")
            shown = seconds_text(cmp.baseline_total_seconds, cmp.candidate_total_seconds)
            self._print(f"  {b}: {shown[0]} seconds")
            self._print(f"  {c}: {shown[1]} seconds")
        if any(math.isfinite(r.compile_seconds) or r.decision for r in (base, cand)):
            self._print()
            self._print("Time to First Step (trials, compilation, then training):")
            for label, run in ((b, base), (c, cand)):
                self._print(f"  {label}: {_breakdown(run)}")
        self._memory(((b, base), (c, cand)))
        self._print()
        self._print("Final Loss:")
        self._print(f"  {b}: {base.final_loss:.6f}")
        self._print(f"  {c}: {cand.final_loss:.6f}")
        self._print(f"  Loss Difference: {cmp.loss_difference:.6f}")
        self._print()
        self._heading("✅ Summary")
        self._summary(cmp, who, b)
        for note in notes:
            self._print(note)
        self._print()
        self._print("🏁 Mixed precision training demo completed!", "bold")

    def _memory(self, runs: Sequence[tuple[str, TrainingRun]]) -> None:
        """Print each run's peak memory, where one was measured."""
        if all(run.peak_memory_bytes is None for _, run in runs):
            return
        self._print()
        # Both phases ran in this one process: the second reuses what the first grew.
        self._print("Peak Memory (as each phase ran in this process; not a comparison):")
        for label, run in runs:
            self._print(f"  {label}: {describe(run.peak_memory_bytes, run.memory_kind)}")

    def _summary(self, cmp: Comparison, who: str, baseline_label: str) -> None:
        """Print the speedup and convergence verdict lines (the comparison's own sentence)."""
        icon = {SpeedupVerdict.EXCELLENT: "🎉 ", SpeedupVerdict.GOOD: "👍 "}
        style = {SpeedupVerdict.EXCELLENT: "bold green", SpeedupVerdict.GOOD: "green"}
        if cmp.outcome is Outcome.SLOWER or cmp.outcome is Outcome.UNKNOWN:
            icon[cmp.speedup_verdict] = "⚠️ "
        text = cmp.summary(who, baseline_label)
        self._print(icon.get(cmp.speedup_verdict, "") + text,
                    style.get(cmp.speedup_verdict, "yellow"))
        lines = {
            ConvergenceVerdict.WELL_PRESERVED: ("✅ Loss convergence well preserved", "green"),
            ConvergenceVerdict.MINOR: ("⚠️ Minor loss difference", "yellow"),
            ConvergenceVerdict.SIGNIFICANT: ("❌ Significant loss difference", "red"),
            ConvergenceVerdict.DIVERGED: ("❌ Training diverged", "bold red"),
        }
        self._print(*lines[cmp.convergence_verdict])


def _breakdown(run: TrainingRun) -> str:
    """``"trials 4.20 s, compile 0.80 s, training 0.50 s"`` (trials: none when cached)."""
    origin = run.decision.origin if run.decision is not None else ""
    trials = {"cache": "none (cached decision)", "rule": "none (by rule)"}.get(origin)
    compile_ = run.compile_seconds
    parts = [f"trials {trials or f'{run.trial_seconds:.2f} s'}"]
    parts.append(f"compile {compile_:.2f} s" if math.isfinite(compile_) else "compile n/a")
    return ", ".join([*parts, f"training {run.training_seconds:.2f} s"])
