"""Tests for gometal_keras.core.device: which precisions a device is worth timing, and why.

No test here restates the module's rules one device at a time. Hypothesis generates any
`DeviceInfo` (CPU, CUDA or Metal, any capability flags, any compute capability) and checks
the properties the rest of the library relies on: float32 is always a candidate, float16 is
never one on a CPU without XLA, every precision is either a candidate or rejected with a
reason (never both), more capability never means fewer candidates. The engine's device
description is checked with made-up GPUs (mocked device details), the CPU description with
mocked CPU flags and a mocked /proc/cpuinfo.
"""

from __future__ import annotations

import dataclasses
from unittest import mock

import keras
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras.core import device as prec
from gometal_keras.core.device import DeviceInfo, cpu_device
from gometal_keras.core.plan import Precision
from gometal_keras.engines.tensorflow import TensorFlowEngine
from gometal_keras.planning.candidates import candidates, policy_of, rejected

SETTINGS = settings(max_examples=50, deadline=None, database=None)

FP32, FP16, BF16 = Precision.FLOAT32, Precision.MIXED_FLOAT16, Precision.MIXED_BFLOAT16

#: Flags a real /proc/cpuinfo may hold: mixed-precision ones and ordinary ones.
FLOAT16_FLAGS = ("avx512_fp16", "amx_fp16", "fphp")  # x86 AVX512-FP16 / AMX-FP16, ARM FP16
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX512-BF16 / AMX-BF16, ARM BF16
OTHER_FLAGS = ("fpu", "sse2", "avx2", "fma", "avx512f", "amx_tile", "asimd", "asimdhp", "sve")
FLAGS = st.lists(st.sampled_from(FLOAT16_FLAGS + BFLOAT16_FLAGS + OTHER_FLAGS), unique=True)

KINDS = st.sampled_from(["cpu", "cuda", "metal"])
CAPABILITIES = st.tuples(st.integers(0, 12), st.integers(0, 9))


@st.composite
def devices(draw: st.DrawFn, kind: st.SearchStrategy[str] = KINDS) -> DeviceInfo:
    """Any device: every flag free, a compute capability on any accelerator."""
    kind = draw(kind)
    return DeviceInfo(
        backend=draw(st.sampled_from(["tensorflow", "jax", "torch"])),
        kind=kind,
        name=draw(st.sampled_from(["Fake CPU", "Fake GPU", "Apple GPU", "NVIDIA H200"])),
        xla=draw(st.booleans()),
        fp16_fast=draw(st.booleans()),
        bf16_fast=draw(st.booleans()),
        tf32=draw(st.booleans()),
        # A CPU has no compute capability (see test_describe_cpu_with_compute_capability).
        compute_capability=None if kind == "cpu" else draw(st.none() | CAPABILITIES),
        cpu_features=tuple(draw(FLAGS)) if kind == "cpu" else (),
    )


# --- candidates / rejected: properties over every device. ---


@SETTINGS
@given(devices())
def test_every_precision_is_a_candidate_or_rejected_never_both(device):
    found, out = candidates(device), rejected(device)
    assert set(found).isdisjoint(out)
    assert set(found) | set(out) == set(Precision)
    for reason in [*found.values(), *out.values()]:
        assert isinstance(reason, str)
        assert reason.strip()
        assert "None" not in reason


@SETTINGS
@given(devices())
def test_float32_is_always_a_candidate(device):
    assert FP32 in candidates(device)
    assert FP32 not in rejected(device)


@SETTINGS
@given(devices(kind=st.just("cpu")))
def test_float16_never_on_a_cpu_without_xla_whatever_the_flags(device):
    cpu = dataclasses.replace(device, xla=False)
    assert FP16 not in candidates(cpu)
    assert "XLA" in rejected(cpu)[FP16]


@SETTINGS
@given(devices())
def test_a_mixed_candidate_needs_its_fast_path(device):
    found = candidates(device)
    if FP16 in found:
        assert device.fp16_fast
        assert device.xla or device.kind != "cpu"
    if BF16 in found:
        assert device.bf16_fast


@SETTINGS
@given(devices(kind=st.sampled_from(["cuda", "metal"])))
def test_an_accelerator_with_a_fast_path_times_it_with_or_without_xla(device):
    for xla in (False, True):
        found = candidates(dataclasses.replace(device, xla=xla))
        assert (FP16 in found) == device.fp16_fast
        assert (BF16 in found) == device.bf16_fast


@SETTINGS
@given(devices(), st.sampled_from(["xla", "fp16_fast", "bf16_fast"]))
def test_more_capability_never_means_fewer_candidates(device, flag):
    less = dataclasses.replace(device, **{flag: False})
    more = dataclasses.replace(device, **{flag: True})
    assert set(candidates(less)) <= set(candidates(more))
    assert set(rejected(more)) <= set(rejected(less))


@SETTINGS
@given(devices(), st.sampled_from(["tensorflow", "jax", "torch"]), st.booleans())
def test_name_backend_and_tf32_do_not_change_the_candidates(device, backend, tf32):
    other = dataclasses.replace(device, backend=backend, name="Another", tf32=tf32)
    assert set(candidates(other)) == set(candidates(device))
    assert set(rejected(other)) == set(rejected(device))


@SETTINGS
@given(devices())
def test_reasons_name_the_device_kind(device):
    for precision, reason in {**candidates(device), **rejected(device)}.items():
        if precision is not FP32:
            assert device.kind in reason, (precision, reason)


# --- DeviceInfo.describe ---


@SETTINGS
@given(devices())
def test_describe(device):
    text = device.describe()
    assert text.startswith(device.name)
    assert device.backend in text
    assert ("no XLA" in text) == (not device.xla)
    assert ("XLA available" in text) == device.xla
    if device.kind != "cpu":
        assert device.kind in text
    if device.compute_capability is not None:
        major, minor = device.compute_capability
        assert f"sm_{major}{minor}" in text
    else:
        assert "sm_" not in text


def test_describe_cpu_with_compute_capability():
    device = DeviceInfo(
        "tensorflow", "cpu", "Fake CPU", True, False, False, compute_capability=(8, 0)
    )
    assert "Fake CPU" in device.describe()


# --- cpu_device and cpu_features (mocked flags, mocked /proc/cpuinfo). ---


def mocked_cpu(flags: tuple[str, ...], xla: bool, backend: str = "tensorflow") -> DeviceInfo:
    with mock.patch.object(prec, "cpu_features", return_value=flags):
        return cpu_device(backend, xla=xla)


@SETTINGS
@given(FLAGS, st.booleans(), st.sampled_from(["tensorflow", "jax", "torch"]))
def test_cpu_device_from_flags(flags, xla, backend):
    dev = mocked_cpu(tuple(flags), xla, backend)
    assert (dev.kind, dev.backend, dev.xla) == ("cpu", backend, xla)
    assert dev.cpu_features == tuple(flags)
    assert dev.compute_capability is None
    assert "CPU" in dev.describe()
    found = candidates(dev)
    # float16 needs float16 arithmetic AND XLA; bfloat16 needs bfloat16 instructions only.
    assert (FP16 in found) == (xla and any(f in FLOAT16_FLAGS for f in flags))
    assert (BF16 in found) == any(f in BFLOAT16_FLAGS for f in flags)


def test_cpu_device_without_mixed_flags_is_float32_only():
    for xla in (False, True):
        dev = mocked_cpu(OTHER_FLAGS, xla)  # AVX2, AVX512F, AMX tiles: no 16-bit float math
        assert set(candidates(dev)) == {FP32}
        assert set(rejected(dev)) == {FP16, BF16}


def read_cpuinfo(text: str) -> tuple[str, ...]:
    with (
        mock.patch.object(prec.platform, "system", return_value="Linux"),
        mock.patch.object(prec.platform, "machine", return_value="x86_64"),
        mock.patch("builtins.open", mock.mock_open(read_data=text)) as opened,
    ):
        found = prec.cpu_features()
    opened.assert_called_once()
    assert opened.call_args.args[0] == "/proc/cpuinfo"
    return found


@SETTINGS
@given(FLAGS, st.sampled_from(["flags", "Features"]))
def test_cpu_features_reads_the_flags_line(flags, key):
    text = (
        "processor\t: 0\n"
        "model name\t: Fake bf16 amx_fp16 CPU\n"  # words in other lines are not flags
        f"{key}\t\t: {' '.join(flags)}\n"
        "processor\t: 1\n"
        f"{key}\t\t: avx512_fp16 bf16 fphp\n"  # only the first CPU's line is read
    )
    found = read_cpuinfo(text)
    assert len(found) == len(set(found))
    assert set(found) <= set(flags)
    assert set(found) >= set(flags) & set(FLOAT16_FLAGS + BFLOAT16_FLAGS)
    assert not set(found) & {"fpu", "sse2", "avx2", "fma", "avx512f", "asimd", "sve"}


def test_cpu_features_without_procfs_or_flags():
    with (
        mock.patch.object(prec.platform, "system", return_value="Linux"),
        mock.patch("builtins.open", side_effect=OSError("no procfs")),
    ):
        assert prec.cpu_features() == ()
    assert read_cpuinfo("processor\t: 0\nmodel name\t: bf16\n") == ()
    assert read_cpuinfo("") == ()


def test_apple_silicon_has_float16_without_reading_procfs():
    with (
        mock.patch.object(prec.platform, "system", return_value="Darwin"),
        mock.patch.object(prec.platform, "machine", return_value="arm64"),
        mock.patch("builtins.open", side_effect=AssertionError("read a file")),
    ):
        found = prec.cpu_features()
    with mock.patch.object(prec, "cpu_features", return_value=found):
        assert FP16 in candidates(cpu_device("tensorflow", xla=True))


# --- The TensorFlow engine: made-up GPUs, jit_options. ---


class EngineDeviceTest(tf.test.TestCase):
    """The TensorFlow engine's device description, with a made-up GPU."""

    def fake_gpu(self, cc: tuple[int, int] | None, metal: bool = False) -> DeviceInfo:
        engine = TensorFlowEngine()
        engine._gpus, engine._metal = ["fake-gpu"], metal
        details = {"device_name": "Fake NVIDIA GPU"}
        if cc is not None:
            details["compute_capability"] = cc
        with mock.patch.object(tf.config.experimental, "get_device_details", return_value=details):
            return engine.describe_device()

    @SETTINGS
    @given(CAPABILITIES, CAPABILITIES)
    def test_newer_nvidia_never_loses_a_candidate(self, a, b):
        old, new = sorted([a, b])
        old_dev, new_dev = self.fake_gpu(old), self.fake_gpu(new)
        for dev, cc in ((old_dev, old), (new_dev, new)):
            self.assertEqual(dev.kind, "cuda")
            self.assertTrue(dev.xla)
            self.assertEqual(dev.compute_capability, None if cc == (0, 0) else cc)
            self.assertIn("Fake NVIDIA GPU", dev.describe())
        self.assertLessEqual(set(candidates(old_dev)), set(candidates(new_dev)))

    def test_tensor_core_generations(self):
        # Pascal has no tensor cores; Volta/Turing have float16 ones; Ampere on add bfloat16.
        self.assertNotIn(FP16, candidates(self.fake_gpu((6, 1))))
        for cc in ((7, 0), (7, 5)):
            found = candidates(self.fake_gpu(cc))
            self.assertIn(FP16, found, cc)
            self.assertNotIn(BF16, found, cc)
            self.assertIn("bfloat16", rejected(self.fake_gpu(cc))[BF16])
        for cc in ((8, 0), (8, 6), (8, 9), (9, 0), (10, 0)):
            self.assertEqual(set(candidates(self.fake_gpu(cc))), set(Precision), cc)
            self.assertEqual(rejected(self.fake_gpu(cc)), {}, cc)
        self.assertEqual(set(candidates(self.fake_gpu(None))), {FP32})  # capability unknown

    def test_metal_has_float16_and_no_xla(self):
        dev = self.fake_gpu(None, metal=True)
        self.assertEqual(dev.kind, "metal")
        self.assertFalse(dev.xla)
        self.assertIn(FP16, candidates(dev))
        self.assertIn("no XLA", dev.describe())
        for precision in Precision:
            self.assertEqual(TensorFlowEngine().jit_options(dev, precision), (False,))

    @SETTINGS
    @given(devices(), st.sampled_from(Precision))
    def test_jit_options(self, device, precision):
        options = TensorFlowEngine().jit_options(device, precision)
        self.assertTrue(options)
        self.assertEqual(len(options), len(set(options)))
        self.assertLessEqual(set(options), {False, True})
        # XLA is timed exactly where the device has it; float16 on a CPU with XLA only
        # under XLA (TF's float16 CPU kernels without XLA are ~100x slower).
        self.assertEqual(True in options, device.xla)
        if not device.xla:
            self.assertEqual(options, (False,))
        elif device.kind == "cpu" and precision is FP16:
            self.assertNotIn(False, options)
        else:
            self.assertEqual(set(options), {False, True})  # not always faster: measure
        if device.kind == "cuda" and device.xla:
            self.assertIs(options[0], True)  # the default on a GPU

    def test_this_machine(self):
        dev = TensorFlowEngine().describe_device()
        self.assertEqual(dev.backend, "tensorflow")
        self.assertIn(FP32, candidates(dev))
        self.assertEqual(set(candidates(dev)) | set(rejected(dev)), set(Precision))
        if not tf.config.list_physical_devices("GPU"):
            self.assertEqual(dev.kind, "cpu")
            self.assertEqual(dev.cpu_features, prec.cpu_features())


class PolicyOfTest(tf.test.TestCase):
    def test_layers_with_weights_decide(self):
        def model(*layers: keras.layers.Layer) -> keras.Model:
            return keras.Sequential([keras.Input((3,)), *layers])

        self.assertEqual(policy_of(model(keras.layers.Dense(2))), "float32")
        mixed = model(keras.layers.Dense(2, dtype="mixed_bfloat16"), keras.layers.Dense(1))
        self.assertEqual(policy_of(mixed), "mixed_bfloat16")
        # A weightless layer's policy does not count.
        plain = model(keras.layers.Dense(2), keras.layers.Activation("relu", dtype="mixed_float16"))
        self.assertEqual(policy_of(plain), "float32")
        for p in Precision:
            self.assertEqual(policy_of(model(keras.layers.Dense(2, dtype=p.value))), p.value)
