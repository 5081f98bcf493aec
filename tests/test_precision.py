"""Tests for gometal_keras.precision: candidates, rejections and the measured choice."""

from __future__ import annotations

import math
from unittest import mock

import tensorflow as tf

from gometal_keras import precision as prec
from gometal_keras.engines.tensorflow import TensorFlowEngine
from gometal_keras.precision import (
    FLOAT32,
    MIN_GAIN,
    MIXED_BFLOAT16,
    MIXED_FLOAT16,
    Decision,
    DeviceInfo,
    candidates,
    choose,
    cpu_device,
    rejected,
)


def cpu(xla: bool, fp16: bool = False, bf16: bool = False) -> DeviceInfo:
    return DeviceInfo("tensorflow", "cpu", "Fake CPU", xla, fp16, bf16)


def nvidia(cc: tuple[int, int]) -> DeviceInfo:
    """A CUDA device with the capabilities the engines derive from its compute capability."""
    return DeviceInfo(
        "jax",
        "cuda",
        "Fake GPU",
        True,
        cc >= (7, 0),
        cc >= (8, 0),
        tf32=cc >= (8, 0),
        compute_capability=cc,
    )


METAL = DeviceInfo("tensorflow", "metal", "Apple GPU", False, True, False)


class Recorder:
    """A `measure` callable returning canned seconds and remembering what it was asked."""

    def __init__(self, seconds: dict[str, float]):
        self.seconds, self.asked = seconds, []

    def __call__(self, name: str) -> float:
        self.asked.append(name)
        return self.seconds[name]


class CandidatesTest(tf.test.TestCase):
    def test_cpu_without_xla_never_gets_float16(self):
        for bf16 in (False, True):
            dev = cpu(xla=False, fp16=False, bf16=bf16)
            self.assertNotIn(MIXED_FLOAT16, candidates(dev))
            self.assertIn(MIXED_FLOAT16, rejected(dev))
            self.assertIn("no XLA", rejected(dev)[MIXED_FLOAT16])

    def test_cpu_without_xla_never_gets_float16_even_if_flagged_fast(self):
        # The issue's rule: "never float16 where it has no fast float16 path (a CPU without
        # XLA)". Keras' float16 CPU kernels without XLA are ~100x slower whatever the ISA.
        dev = cpu(xla=False, fp16=True, bf16=True)
        self.assertNotIn(MIXED_FLOAT16, candidates(dev))
        self.assertIn(MIXED_FLOAT16, rejected(dev))

    def test_cpu_flags(self):
        self.assertEqual(set(candidates(cpu(xla=True))), {FLOAT32})
        self.assertEqual(set(candidates(cpu(xla=True, bf16=True))), {FLOAT32, MIXED_BFLOAT16})
        self.assertEqual(set(candidates(cpu(xla=False, bf16=True))), {FLOAT32, MIXED_BFLOAT16})
        both = cpu(xla=True, fp16=True, bf16=True)
        self.assertEqual(set(candidates(both)), {FLOAT32, MIXED_FLOAT16, MIXED_BFLOAT16})
        self.assertEqual(rejected(both), {})
        why = rejected(cpu(xla=True))
        self.assertEqual(set(why), {MIXED_FLOAT16, MIXED_BFLOAT16})
        self.assertIn("float16 arithmetic", why[MIXED_FLOAT16])
        self.assertIn("bfloat16", why[MIXED_BFLOAT16])
        self.assertTrue(all(isinstance(v, str) and v for v in candidates(both).values()))

    def test_nvidia(self):
        self.assertEqual(set(candidates(nvidia((6, 1)))), {FLOAT32})
        volta = nvidia((7, 0))
        self.assertEqual(set(candidates(volta)), {FLOAT32, MIXED_FLOAT16})
        self.assertEqual(set(rejected(volta)), {MIXED_BFLOAT16})
        for cc in ((8, 0), (8, 6), (9, 0)):
            self.assertEqual(set(candidates(nvidia(cc))), {FLOAT32, MIXED_FLOAT16, MIXED_BFLOAT16})
            self.assertEqual(rejected(nvidia(cc)), {})
        text = nvidia((9, 0)).describe()
        for bit in ("Fake GPU", "cuda", "sm_90", "jax", "XLA"):
            self.assertIn(bit, text)
        self.assertNotIn("no XLA", text)

    def test_metal(self):
        self.assertEqual(set(candidates(METAL)), {FLOAT32, MIXED_FLOAT16})
        self.assertEqual(set(rejected(METAL)), {MIXED_BFLOAT16})
        text = METAL.describe()
        for bit in ("Apple GPU", "metal", "tensorflow", "no XLA"):
            self.assertIn(bit, text)


class ChooseTest(tf.test.TestCase):
    def test_picks_fastest(self):
        measure = Recorder({FLOAT32: 2.0, MIXED_FLOAT16: 1.0, MIXED_BFLOAT16: 1.1})
        d = choose(nvidia((9, 0)), measure)
        self.assertEqual(d.chosen, MIXED_FLOAT16)
        self.assertEqual(sorted(measure.asked), sorted([FLOAT32, MIXED_FLOAT16, MIXED_BFLOAT16]))
        self.assertEqual(d.seconds, {FLOAT32: 2.0, MIXED_FLOAT16: 1.0, MIXED_BFLOAT16: 1.1})
        self.assertIn("mixed_float16 chosen", d.reason)
        self.assertIn("2.00x", d.reason)
        measure = Recorder({FLOAT32: 2.0, MIXED_FLOAT16: 1.3, MIXED_BFLOAT16: 1.1})
        self.assertEqual(choose(nvidia((9, 0)), measure).chosen, MIXED_BFLOAT16)
        measure = Recorder({FLOAT32: 1.0, MIXED_FLOAT16: 1.3, MIXED_BFLOAT16: 1.1})
        self.assertEqual(choose(nvidia((9, 0)), measure).chosen, FLOAT32)

    def test_only_candidates_are_timed(self):
        measure = Recorder({FLOAT32: 1.0, MIXED_BFLOAT16: 0.5})
        d = choose(cpu(xla=False, bf16=True), measure)
        self.assertEqual(measure.asked.count(MIXED_FLOAT16), 0)
        self.assertEqual(d.chosen, MIXED_BFLOAT16)
        self.assertIn(MIXED_FLOAT16, d.skipped)
        measure = Recorder({FLOAT32: 1.0, MIXED_FLOAT16: 0.1, MIXED_BFLOAT16: 0.5})
        d = choose(nvidia((9, 0)), measure, names=[FLOAT32, MIXED_BFLOAT16])
        self.assertEqual(sorted(measure.asked), [FLOAT32, MIXED_BFLOAT16])
        self.assertEqual(d.chosen, MIXED_BFLOAT16)
        measure = Recorder({FLOAT32: 1.0, MIXED_FLOAT16: 0.1})
        d = choose(nvidia((7, 0)), measure, names=[FLOAT32, MIXED_FLOAT16, MIXED_BFLOAT16])
        self.assertNotIn(MIXED_BFLOAT16, measure.asked)

    def test_min_gain_edge(self):
        dev = nvidia((9, 0))
        for base in (1.0, 2e-3, 7.5e-5):
            edge = base * (1 - MIN_GAIN)
            at = choose(dev, {FLOAT32: base, MIXED_FLOAT16: 9.0, MIXED_BFLOAT16: edge}.get)
            self.assertEqual(at.chosen, MIXED_BFLOAT16, base)
            above = math.nextafter(edge, math.inf)
            kept = choose(dev, {FLOAT32: base, MIXED_FLOAT16: 9.0, MIXED_BFLOAT16: above}.get)
            self.assertEqual(kept.chosen, FLOAT32, base)
            self.assertIn("float32 kept", kept.reason)
            self.assertIn(f"{MIN_GAIN:.0%}", kept.reason)
            # Just slower than float32 is never chosen either.
            slower = choose(dev, {FLOAT32: base, MIXED_FLOAT16: 9, MIXED_BFLOAT16: base * 1.01}.get)
            self.assertEqual(slower.chosen, FLOAT32)
        self.assertEqual(MIN_GAIN, 0.05)

    def test_non_finite_candidates_ignored(self):
        dev = nvidia((9, 0))
        d = choose(dev, {FLOAT32: 1.0, MIXED_FLOAT16: math.nan, MIXED_BFLOAT16: 0.6}.get)
        self.assertEqual(d.chosen, MIXED_BFLOAT16)
        self.assertTrue(math.isnan(d.seconds[MIXED_FLOAT16]))
        self.assertNotIn("nan", d.reason)
        d = choose(dev, {FLOAT32: 1.0, MIXED_FLOAT16: math.inf, MIXED_BFLOAT16: 2.0}.get)
        self.assertEqual(d.chosen, FLOAT32)
        # float32 unsound: the fastest sound mixed precision wins without a baseline.
        d = choose(dev, {FLOAT32: math.nan, MIXED_FLOAT16: 0.9, MIXED_BFLOAT16: 0.8}.get)
        self.assertEqual(d.chosen, MIXED_BFLOAT16)

    def test_all_non_finite_raises(self):
        with self.assertRaisesRegex(RuntimeError, "non-finite"):
            choose(nvidia((9, 0)), lambda name: math.nan)
        with self.assertRaises(RuntimeError):
            choose(cpu(xla=True), lambda name: math.inf)

    def test_float32_only_device(self):
        measure = Recorder({FLOAT32: 1e-3})
        d = choose(cpu(xla=False), measure)
        self.assertEqual(measure.asked, [FLOAT32])
        self.assertEqual(d.chosen, FLOAT32)
        self.assertIn("no mixed precision runs fast here", d.reason)
        self.assertIn("no XLA", d.reason)

    def test_decision_to_dict(self):
        d = choose(nvidia((8, 0)), {FLOAT32: 2.0, MIXED_FLOAT16: 1.0, MIXED_BFLOAT16: 1.5}.get)
        data = d.to_dict()
        self.assertEqual(set(data), {"chosen", "candidates", "reason", "skipped"})
        self.assertEqual(data["chosen"], MIXED_FLOAT16)
        self.assertEqual(
            data["candidates"], {FLOAT32: 2.0, MIXED_FLOAT16: 1.0, MIXED_BFLOAT16: 1.5}
        )
        self.assertEqual(data["reason"], d.reason)
        self.assertEqual(data["skipped"], {})
        data["candidates"][FLOAT32] = 0.0  # a copy: the decision is unchanged
        self.assertEqual(d.seconds[FLOAT32], 2.0)
        manual = Decision(FLOAT32, {FLOAT32: 1.0}, "why", {MIXED_FLOAT16: "slow"}).to_dict()
        self.assertEqual(manual["skipped"], {MIXED_FLOAT16: "slow"})


class CpuDeviceTest(tf.test.TestCase):
    def device(self, flags: tuple[str, ...], xla: bool) -> DeviceInfo:
        with mock.patch.object(prec, "cpu_features", return_value=flags):
            return cpu_device("tensorflow", xla=xla)

    def test_bf16_flags(self):
        for flag in ("avx512_bf16", "amx_bf16", "bf16"):
            dev = self.device((flag,), xla=False)
            self.assertTrue(dev.bf16_fast, flag)
            self.assertFalse(dev.fp16_fast, flag)
            self.assertEqual(set(candidates(dev)), {FLOAT32, MIXED_BFLOAT16})
            self.assertEqual(dev.cpu_features, (flag,))

    def test_fp16_needs_xla(self):
        for flag in ("avx512_fp16", "amx_fp16", "fphp"):
            self.assertFalse(self.device((flag,), xla=False).fp16_fast, flag)
            self.assertNotIn(MIXED_FLOAT16, candidates(self.device((flag,), xla=False)))
            self.assertTrue(self.device((flag,), xla=True).fp16_fast, flag)
            self.assertIn(MIXED_FLOAT16, candidates(self.device((flag,), xla=True)))

    def test_no_flags(self):
        dev = self.device((), xla=True)
        self.assertEqual(dev.kind, "cpu")
        self.assertEqual(dev.backend, "tensorflow")
        self.assertTrue(dev.xla)
        self.assertFalse(dev.fp16_fast or dev.bf16_fast)
        self.assertEqual(set(candidates(dev)), {FLOAT32})
        self.assertIn("CPU", dev.describe())

    def test_cpu_features_reads_proc_cpuinfo(self):
        text = "processor\t: 0\nflags\t\t: fpu sse avx512_bf16 amx_tile avx2 amx_bf16\n"
        with (
            mock.patch.object(prec.platform, "system", return_value="Linux"),
            mock.patch("builtins.open", mock.mock_open(read_data=text)),
        ):
            found = prec.cpu_features()
        self.assertEqual(set(found), {"avx512_bf16", "amx_tile", "amx_bf16"})
        with (
            mock.patch.object(prec.platform, "system", return_value="Linux"),
            mock.patch("builtins.open", side_effect=OSError("no procfs")),
        ):
            self.assertEqual(prec.cpu_features(), ())


class EngineDeviceTest(tf.test.TestCase):
    """The TensorFlow engine's device description, with a made-up GPU."""

    def fake_gpu(self, cc: tuple[int, int] | None, metal: bool = False) -> DeviceInfo:
        engine = TensorFlowEngine()
        engine._gpus, engine._metal = ["fake-gpu"], metal
        details = {"device_name": "Fake V100"}
        if cc is not None:
            details["compute_capability"] = cc
        with mock.patch.object(tf.config.experimental, "get_device_details", return_value=details):
            return engine.describe_device(), engine

    def test_nvidia_compute_capability(self):
        volta, engine = self.fake_gpu((7, 0))
        self.assertEqual(volta.kind, "cuda")
        self.assertEqual(volta.compute_capability, (7, 0))
        self.assertTrue(volta.xla and volta.fp16_fast)
        self.assertFalse(volta.bf16_fast)
        self.assertEqual(set(candidates(volta)), {FLOAT32, MIXED_FLOAT16})
        self.assertIn(True, engine.jit_options(volta, FLOAT32))
        ampere, _ = self.fake_gpu((8, 0))
        self.assertTrue(ampere.fp16_fast and ampere.bf16_fast)
        self.assertEqual(set(candidates(ampere)), {FLOAT32, MIXED_FLOAT16, MIXED_BFLOAT16})
        old, _ = self.fake_gpu((6, 0))
        self.assertEqual(set(candidates(old)), {FLOAT32})

    def test_metal_has_float16_and_no_xla(self):
        dev, engine = self.fake_gpu(None, metal=True)
        self.assertEqual(dev.kind, "metal")
        self.assertFalse(dev.xla)
        self.assertEqual(set(candidates(dev)), {FLOAT32, MIXED_FLOAT16})
        for name in (FLOAT32, MIXED_FLOAT16):
            self.assertEqual(engine.jit_options(dev, name), (False,))

    def test_cpu_jit_options(self):
        engine = TensorFlowEngine()
        dev = cpu(xla=True, fp16=True, bf16=True)
        self.assertEqual(engine.jit_options(dev, MIXED_FLOAT16), (True,))
        self.assertEqual(set(engine.jit_options(dev, FLOAT32)), {True, False})
        self.assertEqual(engine.jit_options(cpu(xla=False), FLOAT32), (False,))

    def test_this_machine(self):
        engine = TensorFlowEngine()
        dev = engine.describe_device()
        self.assertEqual(dev.backend, "tensorflow")
        self.assertIn(FLOAT32, candidates(dev))
        if not tf.config.list_physical_devices("GPU"):
            self.assertEqual(dev.kind, "cpu")
            self.assertEqual(
                dev.bf16_fast, bool({"avx512_bf16", "amx_bf16", "bf16"} & set(prec.cpu_features()))
            )
