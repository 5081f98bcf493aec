"""precision="auto" with the decision cache, through `Trainer`, across processes.

This process times the candidates and stores the decision; a new process (the
trial runner made to raise, so any trial fails the test) starts its first epoch without
trials and, with the same seed, trains bit for bit the same losses. "always" times again;
"never" times nothing and takes the rule's plan. The cache folder is the test's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from unittest import mock

import numpy as np

from gometal_keras import engines
from gometal_keras.core.config import TrainerConfig
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.planning import autotune
from gometal_keras.planning.candidates import preferred
from gometal_keras.planning.trial_runner import TrialRunner
from gometal_keras.training.trainer import Trainer

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from gometal_keras.planning import trial_runner
    from gometal_keras.model.builder import ModelBuilder
    from gometal_keras.core.config import TrainerConfig
    from gometal_keras.training.trainer import Trainer
    def refuse(*args, **kwargs):
        raise AssertionError("a trial ran")
    trial_runner.TrialRunner.__call__ = refuse
    b = ModelBuilder([16, 6]).add_dense(12).add_relu().add_dropout(0.2).add_dense(3)
    t = Trainer(b, TrainerConfig(batch_size=16, precision="auto", seed=7))
    x = np.random.default_rng(0).standard_normal((64, 6))
    y = np.random.default_rng(1).integers(0, 3, 64)
    run = t.fit(x, y, epochs=3)
    print(json.dumps({"origin": t.decision.origin, "plan": t.plan.label(),
                      "trial_seconds": run.trial_seconds, "losses": [repr(v) for v in run.losses]}))
""")


def builder() -> ModelBuilder:
    return ModelBuilder([16, 6]).add_dense(12).add_relu().add_dropout(0.2).add_dense(3)


def test_a_new_process_starts_without_trials_and_reproduces_the_run():
    config = TrainerConfig(batch_size=16, precision="auto", seed=7)
    first = Trainer(builder(), config)  # this process: trials, and the decision stored
    x = np.random.default_rng(0).standard_normal((64, 6))
    y = np.random.default_rng(1).integers(0, 3, 64)
    run = first.fit(x, y, epochs=3)
    assert first.decision.origin == "trials" and len(first.decision.candidates) >= 2
    assert run.trial_seconds > 0
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    second = json.loads(done.stdout.strip().splitlines()[-1])
    assert second["origin"] == "cache" and second["trial_seconds"] == 0.0
    assert second["plan"] == first.plan.label()
    assert second["losses"] == [repr(v) for v in run.losses]  # bit for bit


def tiny() -> ModelBuilder:
    return ModelBuilder([8, 4]).add_dense(6).add_relu().add_dense(2)


def test_always_times_again_and_never_times_nothing():
    config = TrainerConfig(batch_size=8, precision="auto", seed=1)
    first = Trainer(tiny(), config)
    assert first.decision.origin == "trials"
    with mock.patch.object(TrialRunner, "measure", autospec=True,
                           side_effect=TrialRunner.measure) as measure:  # fmt: skip
        cached = Trainer(tiny(), config)
        measure.assert_not_called()
        again = Trainer(tiny(), config.replace(decision_cache="always"))
        measure.assert_called_once()
    assert (cached.decision.origin, again.decision.origin) == ("cache", "trials")
    with mock.patch.object(TrialRunner, "__call__", side_effect=AssertionError):
        ruled = Trainer(tiny(), config.replace(decision_cache="never"))
    engine = engines.current()
    device = engine.describe_device()
    expected = autotune.plans(config, engine, device, preferred(device))[0]
    assert ruled.decision.origin == "rule" and ruled.plan == expected
    assert ruled.decision.candidates == ()
