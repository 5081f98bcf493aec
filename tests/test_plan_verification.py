"""The one verification every plan passes (`gometal_keras.planning.verify`), from every source.

A plan reaches the trainer from trials, the decision cache, the rule (``decision_cache=
"never"``) or as the sole option; each is checked the same way. Two classes of input are
drawn here: a decision-cache entry whose plan was edited with its key left alone (any edit
the planner could not have made must be refused with a warning and the plan decided again;
the oracle is the set of plans the config allows, written out in the test), and an Apple GPU
(a fake Metal engine) whose float32 losses are wrong, under every way of asking for a plan (a
builder or a keras.Model, explicit or auto, cache on, always or never): it must never train
on that device, and an explicit precision is never replaced. No test branches on a time.
"""

from __future__ import annotations

import json
import warnings
from unittest import mock

import numpy as np
import pytest
from fakes import FaultyEngine
from helpers import tiny_builder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gometal_keras import engines
from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.plan import Loop, LossScaling, Precision, RunPlan
from gometal_keras.planning import decision_cache, trials
from gometal_keras.planning.verify import Verifier
from gometal_keras.training.trainer import Trainer

#: Trials kept short: one warm-up and two timed rounds.
QUICK = mock.patch.multiple(trials, MIN_ROUNDS=2, MAX_ROUNDS=2)
BATCH, FEATURES = 8, 4


def config(**overrides) -> TrainerConfig:
    """float32 asked for explicitly; XLA and the loop measured (so the cache is used)."""
    fields = {"batch_size": BATCH, "precision": "float32", "seed": 0, "jit_compile": None,
              "loop": "auto", "initial_loss_scale": 1024.0}
    return TrainerConfig(**{**fields, **overrides})


def builder():
    return tiny_builder(features=FEATURES, batch=BATCH)


def entry_file(cfg: TrainerConfig):
    engine = engines.current()
    key = decision_cache.cache_key(builder(), cfg, engine.describe_device(), "Placement")
    return decision_cache.entry_path(key)


def allowed(cfg: TrainerConfig, plan: dict) -> bool:
    """The oracle: whether the plan dict is one this float32 config may run on one device."""
    return (plan["precision"] == "float32" and plan["loss_scaling"] is None
            and plan["guard"] is True and plan.get("replicas", 1) == 1
            and plan.get("placement", "one device") == "one device"
            and (cfg.loop == "auto" or plan["loop"] == cfg.loop)
            and plan["loop"] in ("fused", "step"))


#: Edits of a stored plan, each a change whoever can write to the cache folder could make.
TAMPERS = st.one_of(
    st.fixed_dictionaries({"guard": st.just(False)}),
    st.fixed_dictionaries({"precision": st.sampled_from(["mixed_bfloat16", "mixed_float16"])}),
    st.fixed_dictionaries({"precision": st.just("mixed_float16"),
                           "loss_scaling": st.just(None), "guard": st.booleans()}),
    st.fixed_dictionaries({"precision": st.just("mixed_float16"), "guard": st.just(False),
                           "loss_scaling": st.fixed_dictionaries({
                               "initial_scale": st.sampled_from([1.0, 2.0**20]),
                               "growth_interval": st.integers(1, 5)})}),
    st.fixed_dictionaries({"replicas": st.integers(2, 8)}),
    st.fixed_dictionaries({"placement": st.sampled_from(["CPU", "2 devices"])}),
    st.fixed_dictionaries({"loop": st.sampled_from(["step", "fused"])}),
)


class TestTamperedCacheEntry:
    @pytest.fixture(autouse=True)
    def _quick(self):
        with QUICK:
            yield

    def stored(self, cfg: TrainerConfig) -> dict:
        first = Trainer(builder(), cfg.replace(decision_cache="always"))  # timed and stored
        assert first.decision is not None and first.decision.origin == "trials"
        return json.loads(entry_file(cfg).read_text())

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
    @given(tamper=TAMPERS, loop=st.sampled_from(["auto", "fused"]))
    def test_an_edited_plan_is_refused_with_a_warning_and_decided_again(self, tamper, loop):
        cfg = config(loop=loop)
        entry = self.stored(cfg)
        plan = {**entry["decision"]["plan"], **tamper}
        entry["decision"]["plan"] = plan
        entry_file(cfg).write_text(json.dumps(entry))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = Trainer(builder(), cfg)
        said = " ".join(str(w.message) for w in caught if w.category is RuntimeWarning)
        if allowed(cfg, plan):  # an edit the planner could have made stands
            assert trainer.decision.origin == "cache", said
        else:
            assert "refused" in said or "unreadable" in said, plan
            assert trainer.decision.origin == "trials"
            back = json.loads(entry_file(cfg).read_text())["decision"]["plan"]
            assert allowed(cfg, back), back  # the entry was replaced by a sound one
        assert trainer.plan.precision is Precision.FLOAT32  # explicit: never replaced
        assert trainer.plan.guard and trainer.plan.loss_scaling is None

    def test_a_guard_switched_off_in_the_cache_still_refuses_an_overflowing_batch(self):
        cfg = config()
        entry = self.stored(cfg)
        entry["decision"]["plan"]["guard"] = False
        entry_file(cfg).write_text(json.dumps(entry))
        with pytest.warns(RuntimeWarning, match="non-finite guard off"):
            trainer = Trainer(builder(), cfg)
        before = [w.copy() for w in trainer.model.get_weights()]
        x = np.full((BATCH, FEATURES), 3e38, np.float32)
        x[:, ::2] *= -1  # finite inputs whose loss overflows
        with pytest.raises(FloatingPointError):
            trainer.train_batch(x, np.ones(BATCH, np.int32))
        after = trainer.model.get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


class TestVerifierRefusal:
    """`Verifier.refusal` against a numpy-free oracle: membership in the admissible set."""

    PLANS = st.builds(
        RunPlan,
        precision=st.sampled_from(list(Precision)),
        xla=st.booleans(),
        loop=st.sampled_from(list(Loop)),
        guard=st.booleans(),
        replicas=st.integers(1, 3),
    )

    @settings(max_examples=60, deadline=None)
    @given(allowed_plans=st.sets(PLANS, min_size=1, max_size=4), plan=PLANS)
    def test_a_plan_passes_exactly_when_the_planner_could_make_it(self, allowed_plans, plan):
        why = Verifier(allowed_plans).refusal(plan)
        assert (why is None) == (plan in allowed_plans)
        if why is not None:
            assert plan.policy in why or plan.label() in why  # the sentence names the plan

    def test_loss_scaling_other_than_the_configs_is_refused(self):
        scaled = RunPlan(Precision.MIXED_FLOAT16, False, loss_scaling=LossScaling(8.0, 5))
        other = scaled.replace(loss_scaling=LossScaling(2.0**20, 5))
        assert "loss scaling" in Verifier({scaled}).refusal(other)


def metal_trainer(source, engine: FaultyEngine, **overrides) -> Trainer:
    fields = {"batch_size": 16, "seed": 0, "jit_compile": None, "loop": "auto",
              "decision_cache": "cache"}
    with mock.patch.object(engines, "current", return_value=engine):
        return Trainer(source, TrainerConfig(**{**fields, **overrides}))


class TestMetalCheckOnEveryPath:
    """An Apple GPU whose float32 losses are wrong never trains, however the plan is asked for."""

    @pytest.fixture(autouse=True)
    def _quick(self):
        with QUICK:
            yield

    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
    @given(precision=st.sampled_from(["float32", "mixed_float16", "mixed_bfloat16", "auto"]),
           cache=st.sampled_from(["cache", "always", "never"]))
    def test_a_builder_trains_on_the_cpu_and_keeps_an_explicit_precision(self, precision, cache):
        engine = FaultyEngine(wrong=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                trainer = metal_trainer(tiny_builder(), engine, precision=precision,
                                        decision_cache=cache)
        finally:
            engine.release()
        assert trainer.plan.on_host, trainer.plan.label()  # never the wrong device
        if precision != "auto":
            assert trainer.plan.policy == precision  # explicit: never replaced
        # the device's float32 was checked against the CPU before anything trained there
        assert any(label.endswith("on the CPU") for label in engine.calls)

    @pytest.mark.parametrize("cache", ["cache", "never"])
    def test_a_keras_model_is_checked_and_refused_on_a_wrong_device(self, cache):
        model = tiny_builder().compile("float32", seed=0)
        engine = FaultyEngine(wrong=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                with pytest.raises(RuntimeError, match="disagree with the CPU"):
                    metal_trainer(model, engine, decision_cache=cache)
        finally:
            engine.release()

    def test_a_mixed_keras_model_is_checked_in_float32(self):
        model = tiny_builder().compile("mixed_float16", seed=0)
        engine = FaultyEngine(wrong=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                with pytest.raises(RuntimeError, match="disagree with the CPU"):
                    metal_trainer(model, engine, precision="mixed_float16",
                                  decision_cache="never")
        finally:
            engine.release()

    def test_a_right_device_trains_there_from_every_source(self):
        for cache in ("always", "cache", "never"):
            engine = FaultyEngine()
            try:
                trainer = metal_trainer(tiny_builder(), engine, precision="mixed_float16",
                                        decision_cache=cache)
            finally:
                engine.release()
            assert trainer.plan.policy == "mixed_float16"
            assert any(label.endswith("on the CPU") for label in engine.calls)  # checked


@settings(max_examples=10, deadline=None)
@given(precision=st.sampled_from([None, "float32", "mixed_float16", "mixed_bfloat16", "auto"]),
       mixed=st.booleans(), cache=st.sampled_from(["cache", "always", "never"]))
def test_an_empty_builder_is_refused_before_any_trial(precision, mixed, cache):
    from gometal_keras.model.builder import ModelBuilder
    from gometal_keras.planning.trial_runner import TrialRunner

    if precision == "float32" and mixed:
        mixed = False  # a contradiction TrainerConfig refuses on its own
    cfg = TrainerConfig(batch_size=8, precision=precision, use_mixed_precision=mixed,
                        decision_cache=cache, seed=0)
    with mock.patch.object(TrialRunner, "__call__", side_effect=AssertionError("a trial ran")), \
            pytest.raises(ValueError, match="has no layers"):
        Trainer(ModelBuilder([8, 4]), cfg)
