"""The ``first-step`` configuration: time to first step in a fresh process.

``python -m gometal_keras.bench --configs first-step`` starts a fresh Python for every run
(imports are timed apart) and times what a user waits for between building a model and
its first trained step: construction plus a ``fit`` of one batch. Three variants, in turn
within each of `ROUNDS` rounds (``--quick``: 3), the order rotating each round:

- ``keras``: plain Keras, ``Sequential`` + ``compile`` + ``fit`` (the yardstick);
- ``trainer-cold``: ``Trainer`` with an explicit precision and an empty decision cache
  (a fresh folder per run, `decision_cache.ENV`): its loop and XLA trials run;
- ``trainer-cached``: the same with the decision cached by an earlier run.

The model is Go-Metal's seed MLP (784-512-256-10, batch 64), float32 (the precision the
Trainer is given explicitly), on the backend in use.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

from gometal_keras.planning.decision_cache import ENV

#: Rounds (``--quick``: 3); each runs every variant once, in a rotating order.
ROUNDS = 5
VARIANTS = ("keras", "trainer-cold", "trainer-cached")

#: One run: imports, then the build and one step; prints the two times as JSON.
RUN = textwrap.dedent("""
    import json, sys, time
    start = time.perf_counter()
    import keras
    import numpy as np
    from gometal_keras import Trainer, TrainerConfig
    from gometal_keras.bench.configs import configs
    imported = time.perf_counter()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 784)).astype("float32"), rng.integers(0, 10, 64)
    begin = time.perf_counter()
    if sys.argv[1] == "keras":
        model = keras.Sequential([
            keras.Input((784,)), keras.layers.Dense(512, activation="relu"),
            keras.layers.Dropout(0.2), keras.layers.Dense(256, activation="relu"),
            keras.layers.Dropout(0.2), keras.layers.Dense(10)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=64, epochs=1, verbose=0)
        trials = 0.0
    else:
        builder = configs()["seed"].make(64)  # the Keras model above, as a builder chain
        trainer = Trainer(builder, TrainerConfig(batch_size=64, precision="float32", seed=0))
        trainer.fit(x, y, epochs=1)
        trials = trainer.decision.trial_seconds if trainer.decision else 0.0
    done = time.perf_counter()
    print("RESULT " + json.dumps({"import": imported - start, "first_step": done - begin,
                                  "trials": trials}))
""")


def one_run(variant: str, cache: str) -> dict[str, float]:
    """One fresh process of `variant` with its decision cache in `cache`; its times."""
    env = dict(os.environ, **{ENV: cache}, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", RUN, variant], capture_output=True,
                          text=True, env=env, timeout=600, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"The {variant} run failed (exit {done.returncode}): "
                           f"{(done.stderr.strip().splitlines() or [''])[-1][:300]}")
    return json.loads(lines[-1][len("RESULT "):])


def run_all(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Run every variant `ROUNDS` times in fresh processes, interleaved; print the medians.

    Args:
        args: The benchmark's flags (`gometal_keras.bench.__main__.parse_args`): ``quick``.
        log: Called with lines of progress.

    Returns:
        A JSON-ready result (schema ``gometal_keras.bench.first_step/1``), seconds.
    """
    rounds = 3 if args.quick else ROUNDS
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        cached = os.path.join(tmp, "cached")
        one_run("trainer-cached", cached)  # decides once; later cached runs find it
        for r in range(rounds):
            log(f"first-step: round {r + 1} of {rounds}")
            for i in range(len(VARIANTS)):
                variant = VARIANTS[(i + r) % len(VARIANTS)]
                cache = cached if variant == "trainer-cached" else os.path.join(
                    tmp, f"cold-{r}-{variant}")
                runs[variant].append(one_run(variant, cache))
    result = {"schema": "gometal_keras.bench.first_step/1", "rounds": rounds, "runs": runs}
    show(result)
    return result


def show(result: dict[str, Any]) -> None:
    """Print each variant's median time to first step, imports apart."""
    for variant, runs in result["runs"].items():
        first = [r["first_step"] for r in runs]
        trials = statistics.median(r["trials"] for r in runs)
        print(f"{variant:15s} first step {statistics.median(first):6.2f} s (of "
              f"{len(first)}: {', '.join(f'{s:.2f}' for s in first)}), of which trials "
              f"{trials:.2f} s; imports {statistics.median(r['import'] for r in runs):.2f} s")
