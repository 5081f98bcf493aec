"""PyTorch on an Apple GPU (MPS) as a first-class device, faked on this CPU.

Nobody here has a Mac: in a child on the torch backend, ``torch.backends.mps.is_available``
says True (after Keras chose its device, so tensors stay on the CPU) and the engine's GPU
programs may report their losses times 1.5 without raising. MPS gets tensorflow-metal's
protections, keyed by the device kind: its plans are checked against the CPU's float32
losses (a wrong device loses every plan, float16 ones included, and the CPU trains), the CPU
is a timed candidate, and `fit` runs the periodic agreement check. bfloat16 is never a
candidate there (macOS 14+ only, pytorch#119641).
"""

from __future__ import annotations

import textwrap

import pytest
from helpers import RESULT, require_backend, run_script

SCRIPT = textwrap.dedent(
    f"""
    import json, warnings
    from unittest import mock
    import numpy as np, torch
    from gometal_keras import ModelBuilder, Trainer, TrainerConfig, engines
    from gometal_keras.planning import trials
    from gometal_keras.training import agreement

    made = []
    real_for_fit = agreement.for_fit
    def for_fit(*a, **k):
        made.append(real_for_fit(*a, **k))
        return made[-1]

    def scaled(call):
        return lambda *a, **k: call(*a, **k) * 1.5

    results = {{}}
    for mode in ("sound", "wrong"):
        made.clear()
        with mock.patch.object(torch.backends.mps, "is_available", return_value=True), \\
                mock.patch.object(torch.mps, "synchronize", create=True), \\
                mock.patch.object(agreement, "for_fit", for_fit), \\
                mock.patch.multiple(trials, MIN_ROUNDS=2, MAX_ROUNDS=2):
            engine = engines.current()
            kind = engine.describe_device().kind
            real = engine.program
            def program(*args, **kwargs):
                made_program = real(*args, **kwargs)
                if mode == "wrong" and not made_program.plan.on_host:
                    made_program.step = scaled(made_program.step)
                    made_program.epoch = scaled(made_program.epoch)
                return made_program
            with mock.patch.object(engine, "program", program), \\
                    mock.patch.object(engines, "current", return_value=engine), \\
                    warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                builder = ModelBuilder([16, 4]).add_dense(8).add_relu().add_dense(3)
                config = TrainerConfig(batch_size=16, precision="auto", seed=0,
                                       decision_cache="always")
                trainer = Trainer(builder, config)
                x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
                run = trainer.fit(x, np.arange(64) % 3, epochs=2)
        results[mode] = {{
            "device": kind,
            "plan": trainer.plan.label(),
            "candidates": {{c.plan.label(): c.error for c in trainer.decision.candidates}},
            "epochs": run.epochs_run,
            "checks": [None if c is None else c.checks for c in made],
            "warnings": [str(w.message) for w in caught
                         if issubclass(w.category, RuntimeWarning)],
        }}
    print({RESULT!r} + json.dumps(results))
    """
)

GPU = ("float32 (no XLA, fused)", "float32 (no XLA, step)", "mixed_float16 (no XLA, fused)",
       "mixed_float16 (no XLA, step)")
CPU = "float32 (no XLA, fused) on the CPU"


@pytest.fixture(scope="module")
def faked():
    require_backend("torch")
    return run_script(SCRIPT, backend="torch", timeout=600)


def test_mps_plans_are_checked_against_the_cpu_which_is_a_candidate(faked):
    sound = faked["sound"]
    assert sound["device"] == "metal"
    assert list(sound["candidates"]) == [*GPU, CPU]  # float16 yes, bfloat16 never, the CPU too
    assert all(error is None for error in sound["candidates"].values())
    assert sound["epochs"] == 2 and sound["warnings"] == []
    if sound["plan"] != CPU:  # trained on "MPS": the agreement check ran after the last epoch
        assert sound["checks"] == [1]


def test_wrong_mps_numbers_drop_every_mps_plan_and_the_cpu_trains(faked):
    wrong = faked["wrong"]
    assert wrong["plan"] == CPU and wrong["epochs"] == 2
    for label in GPU:
        assert "disagree with the CPU (Apple developer forum thread 778640)" in \
            wrong["candidates"][label]
    assert wrong["checks"] == [None]  # training on the CPU: nothing to compare
    assert any(w.startswith("float32 (no XLA, fused) dropped: losses disagree")
               for w in wrong["warnings"])
