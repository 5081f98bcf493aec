"""One truth in every report: the console headline, the summary, the notes, the plot title and
the JSON state the same figure, sign and verdict of one `Comparison`.

Demo outcomes are drawn as a class: faster, slower, inside the noise, epoch counts that differ
(an early stop), rounds or none, diverged losses, failed trials. The oracle for the sign is the
medians of the rounds (or the phases' times without rounds), computed here with numpy.
"""

from __future__ import annotations

import io
import math
import re
import types

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.device import DeviceInfo
from gometal_keras.core.plan import Precision, RunPlan
from gometal_keras.planning.decision import Decision
from gometal_keras.planning.trials import Candidate
from gometal_keras.reporting.compare import Outcome, SpeedupVerdict, compare_runs
from gometal_keras.reporting.demo import DemoResult, demo_notes
from gometal_keras.reporting.jsonreport import demo_report
from gometal_keras.reporting.plot import comparison_title
from gometal_keras.reporting.report import Reporter
from gometal_keras.training.record import TrainingRun

CPU = DeviceInfo("tensorflow", "cpu", "CPU (test)", False, False, True)
FIGURE = re.compile(r"([+-]\d+\.\d)%")

times = st.floats(0.01, 2.0)


@st.composite
def outcomes(draw):
    """Two runs and, maybe, interleaved rounds: the candidate faster, slower or alike."""
    n_base = draw(st.integers(1, 6))
    n_cand = draw(st.one_of(st.just(n_base), st.integers(1, 6)))  # differ: an early stop
    base_t = draw(st.lists(times, min_size=n_base, max_size=n_base))
    factor = draw(st.sampled_from([0.5, 0.97, 1.0, 1.01, 1.3, 2.0]))
    cand_t = [t * factor * draw(st.floats(0.9, 1.1)) for t in (base_t * 6)[:n_cand]]
    loss = st.one_of(st.floats(0.01, 3.0), st.just(math.nan))
    base = TrainingRun(Precision.FLOAT32, [draw(loss) for _ in base_t], base_t, device="CPU")
    failed = draw(st.booleans())
    decision = None
    if failed:  # trials failed for one plan
        plan = RunPlan(Precision.MIXED_BFLOAT16, xla=False)
        bad = Candidate(RunPlan(Precision.MIXED_FLOAT16, False), math.nan, False, "boom")
        decision = Decision(plan, "mixed_bfloat16 chosen.", (bad, Candidate(plan, 0.001)))
    cand = TrainingRun(Precision.MIXED_BFLOAT16, [draw(loss) for _ in cand_t], cand_t,
                       device="CPU", stopped_early=n_cand < n_base, decision=decision)
    rounds = None
    if draw(st.booleans()):
        k = draw(st.integers(3, 8))
        rb = draw(st.lists(times, min_size=k, max_size=k))
        noise = draw(st.lists(st.floats(0.85, 1.15), min_size=k, max_size=k))
        rounds = (rb, [b * factor * e for b, e in zip(rb, noise, strict=True)])
    return base, cand, rounds


def rendered(cmp, notes):
    out = io.StringIO()
    Reporter(Console(file=out, width=200, force_terminal=False)).comparison(cmp, notes)
    return out.getvalue().splitlines()


@settings(max_examples=120, deadline=None)
@given(outcomes())
def test_every_report_states_the_comparisons_one_figure_and_sign(drawn):
    base, cand, rounds = drawn
    cmp = compare_runs(base, cand, "steady", rounds)
    trainer = types.SimpleNamespace(decision=cand.decision, device=CPU,
                                    config=TrainerConfig(precision="mixed_bfloat16"))
    notes = demo_notes(trainer, cmp)
    lines = rendered(cmp, notes)
    data = demo_report(DemoResult(base, cand, cmp, notes))["comparison"]
    title = comparison_title(cmp)

    # The oracle: the medians of the rounds, else the phases' own times.
    if rounds:
        b, c = float(np.median(rounds[0])), float(np.median(rounds[1]))
    else:
        b, c = cmp.baseline_seconds, cmp.candidate_seconds
    expected = (b / c - 1) * 100 if all(math.isfinite(t) and t > 0 for t in (b, c)) else math.nan
    assert (math.isnan(expected) and math.isnan(cmp.speedup_percent)) or math.isclose(
        cmp.speedup_percent, expected, rel_tol=1e-9, abs_tol=1e-9)

    headline = next(line for line in lines if line.startswith("  Speedup: "))
    summary = lines[lines.index("✅ Summary") + 2]
    figure = cmp.headline()
    assert figure in headline and figure.split(":")[0] in summary and figure in title
    assert data["headline"] == figure and data["outcome"] == cmp.outcome.value
    assert data["speedup_verdict"] == cmp.speedup_verdict.value != "None"
    shown = FIGURE.findall(figure)
    if cmp.outcome is Outcome.UNKNOWN:
        assert not shown and "n/a" in headline and "could not be compared" in summary
        return
    assert float(shown[0]) == round(cmp.speedup_percent, 1)
    for note in notes:  # a note that quotes a speedup quotes this one
        for quoted in FIGURE.findall(note):
            assert quoted in shown, (note, figure)
    if cmp.outcome is Outcome.SLOWER:
        assert cmp.speedup_percent < 0 and "slower" in headline and "slower" in summary
        assert cmp.speedup_verdict is SpeedupVerdict.NO_SPEEDUP
    elif cmp.outcome is Outcome.FASTER:
        assert cmp.speedup_percent > 0 and "speedup" in summary and "No speedup" not in summary
        assert "slower" not in headline + summary
    else:
        assert "No measurable difference" in summary or cmp.speedup_percent == 0
    if rounds:  # the medians printed beside the figure agree with its sign
        medians = [line for line in lines if "ms/epoch (median;" in line]
        ms = [float(re.search(r"(\d+\.\d+) ms/epoch", m).group(1)) for m in medians]
        if cmp.outcome is Outcome.FASTER and round(b * 1e3, 2) != round(c * 1e3, 2):
            assert ms[0] >= ms[1]
        if cmp.outcome is Outcome.SLOWER and round(b * 1e3, 2) != round(c * 1e3, 2):
            assert ms[0] <= ms[1]


def test_figures_of_the_phases_run_one_after_the_other_are_labelled_as_such():
    base = TrainingRun(Precision.FLOAT32, [1.0, 0.5, 0.4], [1.0, 0.2, 0.2], device="CPU",
                       peak_memory_bytes=50 << 20, memory_kind="process peak RSS growth")
    cand = TrainingRun(Precision.MIXED_BFLOAT16, [1.0, 0.5, 0.4], [1.0, 0.3, 0.3],
                       device="CPU", peak_memory_bytes=10 << 20,
                       memory_kind="process peak RSS growth")
    cmp = compare_runs(base, cand, rounds=([0.2, 0.21, 0.2], [0.1, 0.1, 0.11]))
    text = "\n".join(rendered(cmp, ()))
    assert "Training Time (steady state, epochs 2-3; as each phase ran" in text
    assert "Total Time (including compilation; as each phase ran, not a comparison)" in text
    assert "Peak Memory (as each phase ran in this process; not a comparison)" in text
    # the phases' own times say slower, the interleaved rounds say faster: the rounds decide
    assert cmp.outcome is Outcome.FASTER and "Excellent speedup achieved: +100.0%" in text
