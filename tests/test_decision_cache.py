"""Tests for gometal_keras.planning.decision_cache: keys, round trips, corrupt files, two writers.

Every test runs with its own empty cache folder (tests/conftest.py sets the variable).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.device import DeviceInfo
from gometal_keras.core.plan import Precision, RunPlan
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.planning import decision_cache as dc
from gometal_keras.planning.decision import Decision
from gometal_keras.planning.trials import Candidate

SETTINGS = settings(max_examples=20, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
CPU = DeviceInfo("tensorflow", "cpu", "CPU", True, False, False)
FP32 = RunPlan(Precision.FLOAT32, xla=False)
DECISION = Decision(FP32, "why", (Candidate(FP32, 0.002, samples=(0.002, 0.0021, 0.0019)),),
                    trial_seconds=3.5)  # fmt: skip


def key(units: int = 4, batch: int = 8, device: DeviceInfo = CPU) -> dict:
    builder = ModelBuilder([batch, 3]).add_dense(units).add_relu().add_dense(2)
    return dc.cache_key(builder, TrainerConfig(batch_size=batch, precision="auto"), device, "P")


def test_a_stored_decision_reads_back_as_cached():
    k = key()
    assert dc.load(k) is None
    path = dc.store(k, DECISION, "summary")
    assert path is not None and path.parent == dc.cache_dir()
    found = dc.load(k)
    assert found.chosen == FP32 and found.candidates == DECISION.candidates
    assert (found.origin, found.trial_seconds) == ("cache", 0.0)
    assert "timed in 3.50 s" in found.reason
    assert [e["chosen"] for e in dc.entries()] == [FP32.label()]
    assert not list(dc.cache_dir().glob(".*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize(
    "changed",
    [key(units=5), key(batch=16), key(device=DeviceInfo("jax", "cpu", "CPU", True, False, False))],
)
def test_what_decides_the_outcome_is_in_the_key(changed):
    assert dc.entry_path(changed) != dc.entry_path(key())
    dc.store(key(), DECISION, "summary")
    assert dc.load(changed) is None


def test_the_variable_overrides_and_xdg_is_followed(monkeypatch, tmp_path):
    monkeypatch.setenv(dc.ENV, str(tmp_path / "mine"))
    assert dc.cache_dir() == tmp_path / "mine" / "decisions"
    monkeypatch.delenv(dc.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert dc.cache_dir().is_relative_to(tmp_path / "xdg")


@SETTINGS
@given(st.one_of(st.binary(max_size=200), st.integers(1, 400)))
def test_a_corrupt_entry_is_ignored_with_a_warning(damage):
    k = key()
    path = dc.store(k, DECISION, "summary")
    text = path.read_bytes()
    path.write_bytes(damage if isinstance(damage, bytes) else text[: len(text) - damage])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert dc.load(k) is None
    assert any("unreadable decision cache entry" in str(w.message) for w in caught)
    assert dc.store(k, DECISION, "summary") == path and dc.load(k) is not None  # replaced


def _write(k: dict, n: int) -> None:  # in a forked process: modules already imported
    for _ in range(150):
        dc.store(k, DECISION, f"writer {n}")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forked writers need os.fork")
def test_two_processes_writing_at_once_leave_a_whole_entry():
    k = key()
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_write, args=(k, n)) for n in (1, 2)]
    for p in procs:
        p.start()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a half-written file would warn here
        while any(p.is_alive() for p in procs):
            dc.load(k)
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0]
    assert dc.load(k).chosen == FP32
    assert {e["summary"] for e in dc.entries()} <= {"writer 1", "writer 2"}
    assert not list(dc.cache_dir().glob(".*.tmp"))


def test_the_compilation_cache_is_turned_on_only_where_the_engine_has_one(tmp_path):
    from unittest import mock

    from gometal_keras import engines

    class WithCache:
        def __init__(self):
            self.folders = []

        def use_compilation_cache(self, folder):
            self.folders.append(folder)

    engine = WithCache()
    with mock.patch.object(engines, "current", return_value=engine):
        assert dc.use_compilation_cache(tmp_path / "xla") is True
    assert engine.folders == [str(tmp_path / "xla")] and (tmp_path / "xla").is_dir()
    with (
        mock.patch.object(engines, "current", return_value=object()),
        pytest.warns(RuntimeWarning, match="no persistent compilation cache"),
    ):
        assert dc.use_compilation_cache(tmp_path / "none") is False


#: Any JSON value, for values planted inside an otherwise whole entry.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                  max_size=3),
    max_leaves=8,
)


def _planted(entry: dict, path: list[str], value) -> dict:
    """`entry` with the value at `path` (keys into nested dicts) replaced by `value`."""
    import copy

    out = copy.deepcopy(entry)
    node = out
    for name in path[:-1]:
        node = node[name]
    node[path[-1]] = value
    return out


#: Damage of every kind: nesting deeper than the JSON decoder's stack, a file too large, a
#: whole JSON value that is not an entry, and a whole entry with one field replaced.
DAMAGE = st.one_of(
    st.integers(2_000, 200_000).map(lambda n: ("text", "[" * n)),
    st.integers(2_000, 50_000).map(lambda n: ("text", '{"a":' * n)),
    st.just(("text", " " * (dc.MAX_ENTRY_BYTES + 10) + "{}")),
    JSON.filter(lambda v: not isinstance(v, dict)).map(lambda v: ("value", v)),
    st.tuples(st.sampled_from([["decision"], ["decision", "plan"], ["decision", "timed"],
                               ["decision", "plan", "precision"], ["decision", "plan", "replicas"],
                               ["decision", "plan", "loss_scaling"], ["summary"],
                               ["decision", "reason"], ["decision", "chosen"]]),
              JSON).map(lambda pv: ("field", pv)),
)


@SETTINGS
@given(DAMAGE)
def test_any_damaged_entry_is_ignored_and_listing_never_fails(damage):
    import json

    k = key()
    path = dc.store(k, DECISION, "summary")
    kind, what = damage
    if kind == "text":
        path.write_text(what)
    elif kind == "value":
        path.write_text(json.dumps(what))
    else:
        entry = json.loads(path.read_text())
        path.write_text(json.dumps(_planted(entry, *what)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = dc.load(k)  # never raises
    if found is None:
        assert any("unreadable decision cache entry" in str(w.message) for w in caught)
    listed = dc.entries()  # what `gometal-keras info` shows: never raises
    assert [e["path"] for e in listed] == [str(path)]
    assert all(isinstance(e["chosen"], str) for e in listed)


def test_info_keeps_working_over_a_damaged_cache():
    from gometal_keras.reporting.environment import environment, info_lines

    dc.store(key(), DECISION, "summary")
    dc.entry_path({"other": 1}).write_text("[" * 100_000)
    lines = info_lines(environment())
    assert any(line.startswith("Decision cache:") and "(2 cached)" in line for line in lines)


def test_info_shows_the_newest_entries_and_counts_the_rest():
    from gometal_keras.reporting.environment import SHOWN_ENTRIES, environment, info_lines

    facts = environment()
    made = [{"summary": f"model {i}", "chosen": "float32 (XLA, fused)", "reason": "why",
             "created": f"2026-12-{i + 1:02d}T00:00:00+00:00", "path": f"/x/{i}.json"}
            for i in range(SHOWN_ENTRIES + 7)]
    facts["decision_cache"] = {"folder": "/x", "entries": made}
    lines = info_lines(facts)
    shown = [line for line in lines if line.startswith("  model ")]
    newest = [f"  model {i}: float32 (XLA, fused)" for i in reversed(range(len(made)))]
    assert shown == newest[:SHOWN_ENTRIES]
    assert "  ... and 7 older (--json lists them all)" in lines
