"""Tests of `gometal_keras.bench`: work counts, the roofline floor, the plan, the
measurement through the runner registry, the derived figures, and the CLI end to end."""

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import runpy
import sys
import tempfile
from unittest import mock

import numpy as np
import tensorflow as tf

from gometal_keras.bench import __main__ as bench_main
from gometal_keras.bench import configs as cfgs
from gometal_keras.bench import derive, measure, planning, precisions, roofline, runners
from gometal_keras.bench.measurement import Call, RunRequest, Timing
from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.device import DeviceInfo
from gometal_keras.engines.objectives import make_loss
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.training.trainer import Trainer

CPU = DeviceInfo("tensorflow", "cpu", "CPU", True, False, False)
TF32_GPU = DeviceInfo("tensorflow", "cuda", "GPU", True, True, True, tf32=True)


def settings(**changes):
    base = planning.Settings(
        quick=True,
        steps=None,
        repeats=2,
        warmup=1,
        seed=0,
        configs=["seed"],
        precisions=["float32"],
        runners=["gometal"],
    )
    return dataclasses.replace(base, **changes)


class FlopsTest(tf.test.TestCase):
    def test_mlp_flops_by_hand(self):
        b = ModelBuilder([8, 6]).add_dense(4).add_relu().add_dropout(0.5).add_dense(3)
        forward = 2 * (6 * 4) + 2 * (4 * 3)  # 2 x MACs of each dense layer
        self.assertEqual(cfgs.forward_flops_per_sample(b), forward)
        self.assertEqual(cfgs.train_flops_per_step(b), 3 * 8 * forward)
        self.assertEqual(cfgs.train_flops_per_step(b, batch=2), 3 * 2 * forward)

    def test_cnn_flops_by_hand(self):
        b = (
            ModelBuilder([2, 3, 8, 8])
            .add_conv2d(4, 3, padding=1)
            .add_relu()
            .add_maxpool2d(2)  # 8x8 out, then 4x4
            .add_conv2d(5, 3)  # valid: 2x2 out
            .add_dense(7)
        )
        conv1 = 2 * (3 * 3 * 3) * 4 * (8 * 8)
        conv2 = 2 * (4 * 3 * 3) * 5 * (2 * 2)
        dense = 2 * (5 * 2 * 2) * 7
        self.assertEqual(cfgs.forward_flops_per_sample(b), conv1 + conv2 + dense)
        self.assertEqual(cfgs.train_flops_per_step(b), 3 * 2 * (conv1 + conv2 + dense))

    def test_seed_config_matches_go_metal(self):
        seed = cfgs.configs()["seed"]
        b = seed.builder()
        self.assertEqual((seed.batch, seed.samples // seed.batch), (64, 15))
        self.assertEqual([s.kind for s in b.layers].count("dropout"), 2)
        self.assertEqual(b.total_parameters, 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10)
        wide = cfgs.configs()["wide"]
        self.assertEqual((wide.batch, wide.samples), (1024, 65536))
        cnn = cfgs.configs()["cnn"].builder()
        self.assertEqual(cnn.input_shape, (3, 32, 32))
        self.assertEqual([s.kind for s in cnn.layers].count("conv2d"), 3)

    def test_bytes_estimate(self):
        b = ModelBuilder([8, 6]).add_dense(4).add_dense(3)
        params = 6 * 4 + 4 + 4 * 3 + 3
        acts, inputs = 8 * (4 + 3), 8 * 6
        self.assertEqual(cfgs.bytes_per_step(b, "float32"), 40 * params + 4 * acts * 4 + inputs * 4)
        self.assertEqual(
            cfgs.bytes_per_step(b, "mixed_bfloat16"), 40 * params + 4 * acts * 2 + inputs * 2
        )


class FloorTest(tf.test.TestCase):
    def test_floor_is_the_larger_term(self):
        # 1e12 FLOP at 1e14 FLOP/s = 10 ms; 1e9 bytes at 1e12 B/s = 1 ms.
        self.assertAllClose(roofline.floor_seconds(1e12, 1e9, 1e14, 1e12), 0.01)
        # 1e9 bytes at 1e10 B/s = 100 ms dominates.
        self.assertAllClose(roofline.floor_seconds(1e12, 1e9, 1e14, 1e10), 0.1)

    def test_rates_to_dict(self):
        d = roofline.Rates({"float32": 1.0}, 2.0, 3, 4).to_dict()
        self.assertEqual(
            d, {"matmul_flops": {"float32": 1.0}, "bandwidth": 2.0, "matmul_n": 3, "copy_bytes": 4}
        )


class PrecisionsTest(tf.test.TestCase):
    def test_float32_full_turns_tf32_off_then_restores_it(self):
        enabled = tf.config.experimental.tensor_float_32_execution_enabled
        before = enabled()
        try:
            tf.config.experimental.enable_tensor_float_32_execution(True)
            with precisions.precision_context("float32-full"):
                self.assertFalse(enabled())
            self.assertTrue(enabled())
            with precisions.precision_context("float32"):
                self.assertTrue(enabled())
        finally:
            tf.config.experimental.enable_tensor_float_32_execution(before)


class PlanTest(tf.test.TestCase):
    def test_cells_in_order_and_skips_with_reasons(self):
        s = settings(
            configs=["seed", "cnn"],
            precisions=["float32", "float32-full", "auto"],
            runners=["gometal", "keras", "jax-reference"],
        )
        plan = planning.make_plan(s, CPU, "tensorflow")
        cells = [(c.config.name, c.precision, c.runner) for c in plan.cells]
        self.assertEqual(
            cells,
            [
                ("seed", "float32", "gometal"),
                ("seed", "float32", "keras"),
                ("seed", "auto", "gometal"),
                ("cnn", "float32", "gometal"),
                ("cnn", "float32", "keras"),
                ("cnn", "auto", "gometal"),
            ],
        )
        self.assertEqual(plan.precisions, ("float32", "auto"))
        skipped = [(k.config, k.precision, k.runner, k.reason) for k in plan.skipped]
        self.assertEqual(skipped[0], ("*", "float32-full", "*", skipped[0][3]))
        self.assertIn("no TF32", skipped[0][3])
        self.assertIn(("seed", "auto", "keras", "only the Trainer chooses a precision"), skipped)
        jax_only = [k for k in skipped if k[2] == "jax-reference"]
        self.assertLen(jax_only, 4)  # 2 configs x (float32, auto)
        self.assertLen(skipped, 1 + 2 + 4)

    def test_float32_full_runs_where_float32_is_tf32(self):
        plan = planning.make_plan(settings(precisions=["float32-full"]), TF32_GPU, "jax")
        self.assertEqual([c.precision for c in plan.cells], ["float32-full"])
        self.assertEqual(plan.skipped, ())

    def test_devices_keep_the_per_device_batch_and_skip_other_runners(self):
        s = settings(runners=["gometal", "jax-reference"], devices=2, steps=3)
        plan = planning.make_plan(s, CPU, "jax")
        (cell,) = plan.cells
        self.assertEqual((cell.runner, cell.config.batch, cell.config.steps), ("gometal", 128, 3))
        self.assertEqual([k.reason for k in plan.skipped], [runners.NOT_DATA_PARALLEL])

    def test_a_runner_missing_here_is_skipped_once_for_all_cells(self):
        missing = dataclasses.replace(runners.RUNNERS["keras"], available=lambda: "not here")
        with mock.patch.dict(runners.RUNNERS, {"keras": missing}):
            plan = planning.make_plan(
                settings(configs=["seed", "wide"], runners=["keras", "gometal"]), CPU, "tensorflow"
            )
        self.assertEqual({c.runner for c in plan.cells}, {"gometal"})
        self.assertEqual(
            [dataclasses.astuple(k) for k in plan.skipped], [("*", "*", "keras", "not here")]
        )


class FakeSession:
    """A session that records when it was called; `fail_at` raises in that call."""

    def __init__(self, name, order, fail_at=None):
        self.name, self.order, self.fail_at = name, order, fail_at
        self.detail, self.precision, self.calls = name, "", 0

    def call(self):
        self.calls += 1
        self.order.append(self.name)
        if self.calls == self.fail_at:
            raise RuntimeError("out of memory")
        return Call([0.5, 0.1, 0.1], 0.75, 2.0)

    def predict(self):
        return 0.25


class MeasureTest(tf.test.TestCase):
    def test_rounds_interleave_and_a_failing_runner_loses_only_its_cell(self):
        order, requests = [], []

        def fake(name, fail_at=None):
            def prepare(request):
                requests.append(request)
                return FakeSession(name, order, fail_at)

            return runners.Runner(name, prepare)

        def broken(request):
            raise RuntimeError("cannot build")

        fakes = {"a": fake("a"), "b": fake("b", fail_at=3), "c": runners.Runner("c", broken)}
        s = settings(steps=2, repeats=3, runners=["a", "b", "c"])
        log = []
        with mock.patch.dict(runners.RUNNERS, fakes):
            plan = planning.make_plan(s, CPU, "tensorflow")
            measured = measure.measure_cells(plan, s, log.append)
        # One warm-up call each, then the rounds, the order rotated each round; "b" fails
        # in its third call (round 2) and is called no more.
        self.assertEqual(order, ["a", "b", "b", "a", "a", "b", "a"])
        a, b, c = measured
        self.assertEqual(
            (b.error, c.error), ("RuntimeError: out of memory", "RuntimeError: cannot build")
        )
        self.assertIsNone(b.timing)
        self.assertEqual(
            a.timing.round_seconds, [0.1, 0.1, 0.1]
        )  # the first epoch of a call not counted
        self.assertEqual(a.timing.epoch_seconds, [0.1] * 6)
        self.assertAllClose(a.timing.seconds_per_step, 0.05)
        self.assertAllClose(a.timing.call_overhead_seconds, 0.05)
        self.assertEqual(a.timing.predict_seconds, 0.25)
        self.assertTrue(any("cannot build" in line for line in log))
        first, second = requests
        self.assertIs(first.data, second.data)  # one data set per config, for every runner
        self.assertEqual((first.epochs, first.seed), (5, 0))
        self.assertEqual(first.data[0].shape, (64 * 2, 784))


class DeriveTest(tf.test.TestCase):
    def test_floors_ratios_and_speedups(self):
        cfg = cfgs.configs(quick=True)["seed"]
        flops = cfgs.train_flops_per_step(cfg.builder())
        # Bandwidth so high that every floor is compute-bound: floor = flops / rate.
        rates = roofline.Rates(
            {"float32": 1e12, "float32-full": 2.5e11, "mixed_bfloat16": 4e12}, 1e18, 8, 8
        )

        def meas(precision, runner, timing=None, error=None):
            return measure.Measurement(planning.Cell(cfg, precision, runner), timing, error)

        rows = derive.results(
            [
                meas("float32", "gometal", Timing(0.004, [0.06], 2.0)),
                meas("float32-full", "gometal", Timing(0.008, [0.12], math.nan)),
                meas("auto", "gometal", Timing(0.002, [0.03], 1.5, "", "mixed_bfloat16")),
                meas("mixed_bfloat16", "keras", error="ValueError: no"),
            ],
            rates,
            settings(warmup=1, repeats=2),
        )
        f32, full, auto, failed = rows
        # float32-full is held to its own (full float32) rate; auto to what it chose.
        self.assertAllClose(
            [r["floor_seconds"] for r in rows], [flops / r for r in (1e12, 2.5e11, 4e12, 4e12)]
        )
        self.assertEqual([r["bound"] for r in rows], ["compute"] * 4)
        self.assertEqual(
            [r["precision_run"] for r in rows],
            ["float32", "float32", "mixed_bfloat16", "mixed_bfloat16"],
        )
        self.assertLess(auto["bytes_per_step"], f32["bytes_per_step"])  # 16-bit activations
        self.assertAllClose(f32["ratio_to_floor"], 0.004 / (flops / 1e12))
        self.assertAllClose(auto["tflops"], flops / 0.002 / 1e12)
        self.assertEqual((f32["speedup_vs_float32"], f32["speedup_vs_float32_full"]), (None, 2.0))
        self.assertEqual((full["speedup_vs_float32"], full["speedup_vs_float32_full"]), (0.5, None))
        self.assertEqual((auto["speedup_vs_float32"], auto["speedup_vs_float32_full"]), (2.0, 4.0))
        self.assertIsNone(full["loss"])  # a NaN loss is unknown, not a number
        self.assertEqual(auto["loss"], 1.5)
        # A failed cell keeps its floor, has no figures, and no runner's time stands in.
        self.assertEqual(failed["error"], "ValueError: no")
        self.assertIsNone(failed["seconds_per_step"])
        self.assertIsNone(failed["speedup_vs_float32"])
        self.assertEqual([r["loss_after_steps"] for r in rows], [3 * 5 * cfg.steps] * 4)

    def test_ratios_to_the_reference_are_taken_round_by_round(self):
        cfg = cfgs.configs(quick=True)["seed"]
        rates = roofline.Rates({"float32": 1e12}, 1e12, 8, 8)

        def meas(runner, rounds):
            timing = Timing(0.01, [0.1], 2.0, round_seconds=rounds)
            return measure.Measurement(planning.Cell(cfg, "float32", runner), timing)

        mine, bare, ref = derive.results(
            [
                meas("gometal", [2.2, 1.1, 4.4]),
                meas("gometal-epoch", [2.0, 1.0, 4.0]),
                meas("jax-reference", [2.0, 1.0, 2.0]),  # a slow round of both: still 1.1
            ],
            rates,
            settings(),
        )
        self.assertEqual(mine["vs_reference"]["ratio"], 1.1)
        self.assertEqual(mine["vs_reference"]["rounds"], 3)
        self.assertEqual(mine["fit_over_epoch"]["ratio"], 1.1)
        self.assertIsNone(bare["fit_over_epoch"])
        self.assertIsNone(ref["vs_reference"])


class RunnersTest(tf.test.TestCase):
    def test_gometal_and_keras_train_the_same_steps_from_the_same_start(self):
        cfg = cfgs.BenchConfig("tiny", 16, 4, cfgs.mlp((12, 32, 10)))
        x = np.random.default_rng(0).uniform(size=(cfg.samples, 12)).astype(np.float32)
        y = np.argmax(x[:, :10], axis=1).astype(np.int32)  # learnable: the loss moves
        request = RunRequest(cfg, "float32", (x, y), epochs=2, seed=3)
        mine = runners.RUNNERS["gometal"].prepare(request)
        fit = runners.RUNNERS["keras"].prepare(request)
        calls = [(mine.call(), fit.call()) for _ in range(2)]
        self.assertLen(calls[-1][0].epoch_seconds, 2)
        self.assertLen(calls[-1][1].epoch_seconds, 2)
        self.assertEqual(mine.precision, "float32")
        # Mean loss of the fourth epoch, after 16 steps: the same in both runners.
        self.assertAllClose(calls[-1][0].loss, calls[-1][1].loss, rtol=1e-5)
        start = cfg.builder().compile("float32", seed=3)
        untrained = make_loss(TrainerConfig(), start)(y, start(x))  # mean over every batch
        self.assertLess(calls[-1][0].loss, float(untrained))  # it trains
        self.assertGreater(mine.predict(), 0)
        self.assertGreater(fit.predict(), 0)

    def test_the_trainer_runner_goes_through_fit_and_predict(self):
        cfg = cfgs.BenchConfig("tiny", 8, 2, cfgs.mlp((6, 8, 10)))
        x = np.random.default_rng(1).uniform(size=(cfg.samples, 6)).astype(np.float32)
        request = RunRequest(cfg, "float32", (x, np.arange(cfg.samples) % 10), epochs=3, seed=0)
        session = runners.RUNNERS["gometal"].prepare(request)
        with (
            mock.patch.object(Trainer, "fit", autospec=True, side_effect=Trainer.fit) as fit,
            mock.patch.object(Trainer, "train_epoch", autospec=True) as bare,
            mock.patch.object(
                Trainer, "predict", autospec=True, side_effect=Trainer.predict
            ) as predict,
        ):
            call = session.call()
            session.predict()
        ((args, kwargs),) = fit.call_args_list
        self.assertIs(args[1], x)  # the user's arrays, as a user passes them
        self.assertEqual(kwargs, {"epochs": 3})
        bare.assert_not_called()
        predict.assert_called_once()
        self.assertLen(call.epoch_seconds, 3)  # the run record's
        self.assertGreaterEqual(call.wall_seconds, sum(call.epoch_seconds))
        self.assertIn("fit: whole epoch per call", session.detail)


class CliTest(tf.test.TestCase):
    def test_quick_run_writes_json(self):
        # `python -m gometal_keras.bench`, run as __main__ in this process (TensorFlow is
        # already imported here; a subprocess would spend seconds importing it again).
        argv = ["--quick", "--configs", "seed", "--precisions", "float32"]
        argv += ["--runners", "gometal", "--steps", "2", "--repeats", "1"]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "bench.json")
            stdout = io.StringIO()
            with (
                mock.patch.object(sys, "argv", ["bench", *argv, "--json", path]),
                contextlib.redirect_stdout(stdout),
                contextlib.redirect_stderr(io.StringIO()),
                self.assertRaises(SystemExit) as done,
            ):
                sys.modules.pop("gometal_keras.bench.__main__", None)  # runpy runs it afresh
                runpy.run_module("gometal_keras.bench", run_name="__main__", alter_sys=True)
            self.assertEqual(done.exception.code, 0)
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        for key in (
            "schema",
            "date",
            "command",
            "wall_seconds",
            "backend",
            "device",
            "versions",
            "settings",
            "rates",
            "configs",
            "results",
            "skipped",
        ):
            self.assertIn(key, data)
        self.assertEqual(data["schema"], "gometal_keras.bench/2")
        self.assertEqual(data["backend"], "tensorflow")
        self.assertIn("keras", data["versions"])
        self.assertIn("float32", data["rates"]["matmul_flops"])
        self.assertEqual({r["runner"] for r in data["results"]}, {"gometal"})
        flops = data["configs"]["seed"]["train_flops_per_step"]
        for r in data["results"]:
            self.assertIsNone(r["error"])
            self.assertEqual(r["flops_per_step"], flops)
            self.assertLen(r["epoch_seconds"], 2)  # one call of 3 epochs, the first not counted
            # (1 warm-up call + 1 round) x 3 epochs x 2 steps
            self.assertEqual(r["loss_after_steps"], 2 * 3 * 2)
            self.assertIsInstance(r["loss"], float)
            self.assertGreater(r["predict_samples_per_s"], 0)
        self.assertEqual(data["settings"]["steps"], 2)
        self.assertIn("ms/step", stdout.getvalue())
        self.assertIn("-m gometal_keras.bench --quick", data["command"])

    def test_named_configurations_resolve(self):
        args = bench_main.parse_args(["--config", "wide-4096,seed"])
        self.assertEqual(args.configs, ["wide-4096", "seed"])
        self.assertEqual((args.repeats, args.epochs, args.warmup), (20, 5, 1))
        plan = planning.make_plan(planning.Settings.from_args(args), CPU, "tensorflow")
        self.assertEqual(
            {n: (c.batch, c.steps) for n, c in plan.configs.items()},
            {"wide-4096": (4096, 16), "seed": (64, 15)},
        )
        self.assertEqual(bench_main.parse_args([]).configs, ["seed", "wide", "wide-4096", "cnn"])
        streaming = bench_main.parse_args(["--configs", "streaming", "--quick"])
        self.assertEqual(streaming.streaming_precisions, ["float32", "mixed_bfloat16"])
        with (
            contextlib.redirect_stderr(io.StringIO()) as err,
            self.assertRaises(SystemExit),
        ):
            bench_main.parse_args(["--config", "huge"])
        self.assertIn(
            "expected some of seed,wide,wide-4096,cnn,transformer,streaming,apple-guards,"
            "first-step",
            err.getvalue(),
        )


if __name__ == "__main__":
    tf.test.main()


def test_roofline_skips_what_the_device_cannot_run_and_compiles_without_xla_where_none():
    # tensorflow-metal has no XLA and may lack a kernel: the ceilings still get measured.
    import math
    from unittest import mock

    from gometal_keras.bench import roofline

    asked = []

    def rate(dtype, n, repeats=5, chain=4, xla=True):
        asked.append((dtype, xla))
        if dtype == "float16":
            raise RuntimeError("no MatMul kernel for float16 (injected)")
        return 1e12

    with (
        mock.patch.object(roofline, "matmul_rate", rate),
        mock.patch.object(roofline, "copy_bandwidth", return_value=1e9) as copy,
    ):
        rates = roofline.measure(["float32", "mixed_float16"], gpu=False, quick=True, xla=False)
    assert rates.flops["float32"] == 1e12 and math.isnan(rates.flops["mixed_float16"])
    assert [xla for _, xla in asked] == [False, False]
    assert copy.call_args.kwargs["xla"] is False


class FirstStepTest(tf.test.TestCase):
    """The ``first-step`` configuration's schedule, its runs faked (each would be a fresh
    process): every variant once per round in a rotating order; each cold run with a
    decision cache of its own, never seen before; every cached run with the one cache an
    earlier run filled."""

    def test_rounds_rotate_and_only_cached_runs_share_a_cache(self):
        from gometal_keras.bench import first_step

        seen = []

        def fake(variant, cache):
            seen.append((variant, cache))
            return {"import": 1.0, "first_step": 2.0, "trials": 0.0}

        args = argparse.Namespace(quick=True)
        with mock.patch.object(first_step, "one_run", side_effect=fake), \
                contextlib.redirect_stdout(io.StringIO()) as out:
            result = first_step.run_all(args, log=lambda m: None)
        warm, runs = seen[0], seen[1:]
        self.assertEqual(warm[0], "trainer-cached")
        orders = [[v for v, _ in runs[i:i + 3]] for i in range(0, len(runs), 3)]
        self.assertLen(orders, 3)
        for order in orders:
            self.assertCountEqual(order, first_step.VARIANTS)
        self.assertLen({tuple(o) for o in orders}, 3)  # rotated, not repeated
        cold = [c for v, c in runs if v != "trainer-cached"]
        self.assertLen(set(cold), len(cold))
        self.assertNotIn(warm[1], cold)
        self.assertEqual({c for v, c in runs if v == "trainer-cached"}, {warm[1]})
        self.assertEqual({k: len(v) for k, v in result["runs"].items()},
                         dict.fromkeys(first_step.VARIANTS, 3))
        self.assertIn("trainer-cold", out.getvalue())
