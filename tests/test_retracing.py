"""TensorFlow programs trace once per input shape, and TF's retracing warning tells the truth.

A `Trainer`'s step and epoch are `tf.function`s (`engines.tensorflow.traced`). Each trace is
a compile, so over several epochs and several `fit` calls of one trainer (arrays and streams,
step counts that change) a program may trace once for its first shape and once more for a
relaxed one (``reduce_retracing``), never after. And every program a process builds (each
trial, each trainer) traced once must not add up to TensorFlow's "N out of the last M calls
... triggered tf.function retracing" warning, which it printed in the README snippet, the demo
and the image-folder example although no program had traced twice.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")
if keras.backend.backend() != "tensorflow":
    pytest.skip("TensorFlow programs only", allow_module_level=True)

import gometal_keras.engines.tensorflow as tf_engine  # noqa: E402
from gometal_keras import ModelBuilder, Trainer, TrainerConfig  # noqa: E402
from gometal_keras.core.plan import Precision, RunPlan  # noqa: E402
from gometal_keras.engines.base import Objective  # noqa: E402

BATCH = 8
RNG = np.random.default_rng(0)
X = RNG.standard_normal((96, 6)).astype("float32")
Y = RNG.integers(0, 3, 96)


@contextlib.contextmanager
def recorded() -> Iterator[list]:
    """Every `tf.function` the TensorFlow programs build inside, in order (step, epoch)."""
    made: list = []
    original = tf_engine.traced

    def recording(fn, xla):
        made.append(original(fn, xla))
        return made[-1]

    tf_engine.traced = recording
    try:
        yield made
    finally:
        tf_engine.traced = original


class Batches(keras.utils.PyDataset):
    """`samples` rows of X in batches of 5 (re-cut to `BATCH` by the trainer)."""

    def __init__(self, samples: int):
        super().__init__()
        self.samples = samples

    def __len__(self) -> int:
        return -(-self.samples // 5)

    def __getitem__(self, i: int):
        stop = min((i + 1) * 5, self.samples)
        return X[i * 5 : stop], Y[i * 5 : stop]


# One fit call: (samples, epochs, streamed).
FITS = st.lists(
    st.tuples(st.integers(2, 12).map(lambda b: b * BATCH), st.integers(1, 2), st.booleans()),
    min_size=2,
    max_size=3,
)


def traces(*functions) -> int:
    return sum(f.experimental_get_tracing_count() for f in functions)


@settings(max_examples=3, deadline=None)
@given(fits=FITS, precision=st.sampled_from(["float32", "mixed_float16"]), xla=st.booleans())
def test_one_trainer_traces_once_per_shape(fits, precision, xla):
    """Over fit calls of one trainer, a trace only where a call brings a shape not seen."""
    with recorded() as made:
        trainer = Trainer(
            ModelBuilder([BATCH, 6]).add_dense(8).add_relu().add_dense(3),
            TrainerConfig(batch_size=BATCH, precision=precision, jit_compile=xla,
                          loop="fused", seed=0),
        )
    step, epoch = made[-2:]  # the trainer's own program (trials, if any, came before)
    assert [f.python_function.__name__ for f in (step, epoch)] == ["one_step", "train_epoch"]
    seen: set[int] = set()  # the oracle: the step counts of the array epochs so far
    for samples, epochs, streamed in fits:
        before = traces(step, epoch)
        x, y = (Batches(samples), None) if streamed else (X[:samples], Y[:samples])
        assert len(trainer.fit(x, y, epochs=epochs).losses) == epochs
        first = traces(step, epoch)
        if not streamed and samples // BATCH in seen:
            assert first == before, (fits, "an array shape seen before traced again")
        seen |= set() if streamed else {samples // BATCH}
        trainer.fit(x, y, epochs=epochs)  # the same call again: nothing new to trace
        assert traces(step, epoch) == first, (fits, "the same fit call traced again")
    # A shape traces once; a second relaxes it, so every later shape reuses that trace.
    assert epoch.experimental_get_tracing_count() <= 2, fits
    assert step.experimental_get_tracing_count() <= 2, fits


def test_programs_of_one_source_do_not_warn_of_retracing(caplog):
    """Six programs, each traced once: no 'triggered tf.function retracing' warning."""
    engine = tf_engine.TensorFlowEngine()
    xs = tf.constant(X[:32].reshape(4, BATCH, 6))
    ys = tf.constant(Y[:32].reshape(4, BATCH))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with caplog.at_level(logging.WARNING, logger="tensorflow"), recorded() as made:
        for _ in range(6):  # as a trainer's trials and the trainers of one script build them
            model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
            program = engine.program(model, Objective(loss), keras.optimizers.Adam(1e-3),
                                     RunPlan(Precision.FLOAT32, xla=False))
            for _ in range(2):
                values = keras.ops.convert_to_numpy(program.epoch(xs, ys))
                assert values.shape == (4, 1) and np.isfinite(values).all()
    epochs = made[1::2]
    assert [f.experimental_get_tracing_count() for f in epochs] == [1] * 6
    assert not [r for r in caplog.records if "retracing" in r.getMessage()], caplog.text
