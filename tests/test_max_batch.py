"""Tests for gometal_keras.bench.max_batch: the search, against a threshold oracle.

Probes are faked (a batch trains when it is at most a hidden threshold), so the search is
checked without a device; `probe` itself runs in the module's doctest.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras import engines
from gometal_keras.bench.max_batch import GROWTH, RESOLUTION, max_batch, probe, search

SETTINGS = settings(max_examples=25, deadline=None, database=None)


@SETTINGS
@given(st.integers(0, 10**6), st.integers(1, 512), st.integers(1, 2**21))
def test_search_brackets_the_threshold(threshold, start, limit):
    tried = []

    def trains(batch: int) -> bool:
        tried.append(batch)
        return batch <= threshold

    good, bad = search(trains, start, limit)
    assert len(tried) == len(set(tried))  # no batch probed twice
    assert good <= threshold and good <= max(limit, 0)
    if start > threshold or start > limit:
        assert good == 0
        return
    if bad is None:
        assert good == limit or limit < start
    else:
        assert bad > threshold and bad <= max(limit, start * GROWTH)
        assert bad / good <= RESOLUTION or bad == good + 1


def test_rows_carry_the_first_probe_s_peak_memory_and_every_probe():
    fake = lambda c, p, b, q: {"batch": b, "ok": b <= 1000, "peak_memory_bytes": b * 10}  # noqa: E731
    rows = max_batch(["wide", "cnn"], ["float32"], 10**5, quick=True, log=lambda _: None,
                     run_probe=fake)  # fmt: skip
    assert [r["config"] for r in rows] == ["wide", "cnn"]
    for row in rows:
        assert row["peak_memory_bytes"] == row["config_batch"] * 10
        assert row["largest_batch"] <= 1000 < row["first_failed_batch"]
        assert {p["batch"] for p in row["probes"]} >= {row["config_batch"]}


@SETTINGS
@given(st.integers(0, 10**6), st.integers(0, 10**5))
def test_a_known_good_start_still_brackets_the_threshold_and_probes_the_config_batch(
    threshold, start
):
    fake = lambda c, p, b, q: {"batch": b, "ok": b <= threshold, "peak_memory_bytes": b}  # noqa: E731
    row = max_batch(["wide"], ["float32"], 10**6, True, lambda _: None, fake, start=start)[0]
    assert row["probes"][0]["batch"] == row["config_batch"]
    assert len({p["batch"] for p in row["probes"]}) == len(row["probes"])
    assert row["largest_batch"] <= threshold
    if row["first_failed_batch"] is not None:
        assert row["first_failed_batch"] > threshold
        good = max(row["largest_batch"], 1)
        assert row["first_failed_batch"] / good <= RESOLUTION or row["largest_batch"] == 0


@pytest.mark.parametrize("xla", [False, True])
def test_a_probe_uses_xla_exactly_where_the_device_has_it(monkeypatch, xla):
    """On a device without XLA (Metal, the torch backend) a probe must train, not be refused
    for asking for XLA and recorded as a batch that does not fit."""
    engine = engines.current()
    device = dataclasses.replace(engine.describe_device(), xla=xla)
    monkeypatch.setattr(type(engine), "describe_device", lambda self: device)
    result = probe("seed", "float32", 8, quick=True)
    assert result["ok"], result
    assert ("no XLA" in result["plan"]) is (not xla)
