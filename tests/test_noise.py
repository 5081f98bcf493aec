"""Tests for gometal_keras.core.noise: spreads, the confidence rule, paired rounds.

numpy is the oracle for medians and ranges; the paired rule is checked for symmetry (the
baseline and candidate swapped, every ratio inverts) and against the comparison verdicts.
"""

from __future__ import annotations

import math

import numpy as np
from helpers import oracle_clearly_faster
from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras.core.noise import Ratios, Spread, clearly_faster
from gometal_keras.reporting.compare import SpeedupVerdict, compare_runs, speedup_verdict
from gometal_keras.training.record import TrainingRun

SETTINGS = settings(max_examples=25, deadline=None, database=None)
TIMES = st.lists(st.floats(1e-6, 1e3), min_size=1, max_size=12)
ANY = st.lists(st.one_of(st.floats(1e-6, 1e3), st.sampled_from([math.nan, 0.0, -1.0, math.inf])),
               max_size=12)  # fmt: skip


@SETTINGS
@given(ANY)
def test_spread_matches_numpy_on_the_usable_values(values):
    usable = [v for v in values if math.isfinite(v) and v > 0]
    s = Spread.of(values)
    assert s.samples == tuple(usable)
    if usable:
        assert math.isclose(s.median, float(np.median(usable)))
        assert (s.low, s.high) == (min(usable), max(usable))
    else:
        assert math.isnan(s.median) and math.isnan(s.relative)


@SETTINGS
@given(TIMES, TIMES, st.floats(0.0, 0.5))
def test_clearly_faster_is_a_margin_in_the_median_round_won_by_most_rounds(fast, slow, margin):
    assert clearly_faster(fast, slow, margin) == oracle_clearly_faster(fast, slow, margin)
    if clearly_faster(fast, slow, margin) and margin > 0:
        assert not clearly_faster(slow, fast, margin)


@SETTINGS
@given(st.lists(st.floats(1e-3, 1.0), min_size=5, max_size=12), st.floats(1.2, 3.0),
       st.integers(0, 11), st.floats(2.0, 50.0))  # fmt: skip
def test_one_disturbed_round_does_not_hide_a_clear_winner(fast, factor, at, hiccup):
    slow = [t * factor for t in fast]  # the slow one takes `factor` times as long every round
    disturbed = list(fast)
    disturbed[at % len(fast)] *= hiccup  # one round of the fast one stalls
    assert clearly_faster(fast, slow, 0.03)
    assert clearly_faster(disturbed, slow, 0.03)
    assert not clearly_faster(slow, disturbed, 0.03)


@SETTINGS
@given(st.lists(st.tuples(st.floats(1e-3, 10.0), st.floats(1e-3, 10.0)), min_size=1, max_size=10))
def test_paired_rounds_are_symmetric(pairs):
    base, cand = tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
    forward, backward = Ratios(base, cand), Ratios(cand, base)
    assert forward.measurable == backward.measurable
    ratios = [b / c for b, c in pairs]
    assert math.isclose(forward.speedup_percent, (float(np.median(ratios)) - 1) * 100)
    if forward.measurable:
        assert len(pairs) >= 3
        assert min(ratios) >= 1.02 or max(ratios) <= 1 / 1.02


@SETTINGS
@given(st.lists(st.tuples(st.floats(1e-3, 10.0), st.floats(1e-3, 10.0)), min_size=3, max_size=8))
def test_the_seed_verdicts_stay_for_measurable_differences(pairs):
    base, cand = [p[0] for p in pairs], [p[1] for p in pairs]
    run = TrainingRun("float32", [1.0, 0.5], [0.2, 0.1])
    cmp = compare_runs(run, TrainingRun("mixed_float16", [1.0, 0.5], [0.2, 0.1]),
                       rounds=(base, cand))  # fmt: skip
    if cmp.measurable:
        assert cmp.speedup_verdict == speedup_verdict(cmp.speedup_percent)
    else:
        assert cmp.speedup_verdict is SpeedupVerdict.NO_DIFFERENCE
    assert cmp.speedup_low_percent <= cmp.speedup_percent <= cmp.speedup_high_percent
    assert cmp.rounds == len(pairs)


def test_the_report_says_no_measurable_difference_inside_the_noise():
    import io

    from rich.console import Console

    from gometal_keras.reporting.report import Reporter

    a = TrainingRun("float32", [1.0, 0.5, 0.4], [1.0, 0.30, 0.30])
    b = TrainingRun("mixed_float16", [1.0, 0.5, 0.41], [1.0, 0.20, 0.20])  # 50% sequentially
    lines = {}
    for name, rounds in {"noise": ([0.3, 0.33, 0.29, 0.31], [0.3, 0.31, 0.3, 0.32]),
                         "real": ([0.3, 0.33, 0.29, 0.31], [0.23, 0.25, 0.22, 0.24])}.items():
        console = Console(file=io.StringIO(), width=120)
        Reporter(console, plain=True, emoji=False).comparison(compare_runs(a, b, rounds=rounds))
        lines[name] = console.file.getvalue()
    assert "No measurable difference: " in lines["noise"]
    assert "speedup achieved" not in lines["noise"]
    assert ": no measurable difference" in lines["noise"]
    assert "[GOOD] Good speedup achieved: " in lines["real"]  # the seed's block, 20-50%
    assert "No measurable difference" not in lines["real"]
