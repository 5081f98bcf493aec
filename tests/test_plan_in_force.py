"""What runs is what is reported: the plan a program really runs reaches every reader.

Under a `tf.distribute` strategy the TensorFlow program runs without XLA and without the
non-finite guard, whatever was asked. The trainer, its messages and the run record must say
so (on 79f2ad5 the record said "XLA" and `train_batch` said "the weights are unchanged"
after a non-finite update had been applied).
"""

import textwrap

import tensorflow as tf
from helpers import run_script

MIRRORED = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from gometal_keras import ModelBuilder, Trainer, TrainerConfig

    cfg = TrainerConfig(batch_size=8, problem_type="regression", loss="mse",
                        precision="float32", seed=1, jit_compile=True,
                        distribution="data_parallel")
    t = Trainer(ModelBuilder([8, 3]).add_dense(1), cfg)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 3)).astype("float32"), rng.normal(size=16).astype("float32")
    run = t.fit(x, y, epochs=1)
    before = [w.copy() for w in t.model.get_weights()]
    try:
        t.train_batch(np.full((8, 3), 3e38, "float32"), np.zeros(8, "float32"))
        message = None
    except FloatingPointError as err:
        message = str(err)
    after = t.model.get_weights()
    out = {
        "plan": t.plan.to_dict(),
        "run_plan": run.plan.to_dict(),
        "loop": run.loop,
        "message": message,
        "unchanged": all(np.array_equal(a, b) for a, b in zip(before, after)),
    }
    print("RESULT " + json.dumps(out))
    """
)


class MirroredPlanTest(tf.test.TestCase):
    def test_record_and_messages_follow_the_plan_that_ran(self):
        out = run_script(MIRRORED)
        plan = out["plan"]
        # XLA and the guard were asked for (jit_compile=True, float32) but do not run here.
        self.assertFalse(plan["xla"])
        self.assertFalse(plan["guard"])
        self.assertEqual(plan["replicas"], 2)
        self.assertEqual(out["run_plan"], plan)
        self.assertIn("(no XLA", out["loop"])
        self.assertNotIn("(XLA", out["loop"])
        message = out["message"]
        self.assertIsNotNone(message, "a non-finite loss must not pass silently")
        # The message says what happened to the weights, and it is true.
        claims_unchanged = "unchanged" in message or "skipped" in message
        self.assertEqual(claims_unchanged, out["unchanged"], message)
        self.assertIn("without the non-finite guard", message)
