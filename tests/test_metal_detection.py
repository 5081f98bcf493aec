"""Apple GPUs recognised by the device, and a Metal plugin that loads but registers no GPU.

Nobody here has a Mac: TensorFlow's device list and details, the platform and the plugin's
package metadata are injected. An Apple GPU is one whose details name Metal, or a macOS GPU
without a CUDA compute capability (another Metal plugin, say); a plugin installed with no GPU
registered is said at `Trainer` time (a RuntimeWarning) and in `gometal-keras info`.
"""

from __future__ import annotations

import warnings
from unittest import mock

import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras.engines import tensorflow as tf_engine
from gometal_keras.engines.tensorflow import TensorFlowEngine, is_apple_gpu
from gometal_keras.reporting.environment import environment, info_lines

DETAILS = st.fixed_dictionaries(
    {"device_name": st.one_of(st.sampled_from(["METAL", "Apple M2", "NVIDIA H200",
                                               "Tesla T4", "GPU"]), st.text(max_size=12))},
    optional={"compute_capability": st.tuples(st.integers(3, 10), st.integers(0, 9))},
)


@settings(max_examples=100, deadline=None)
@given(details=DETAILS, platform=st.sampled_from(["darwin", "linux", "win32"]))
def test_an_apple_gpu_is_known_by_the_device_not_a_package_name(details, platform):
    name = details["device_name"].lower()
    expected = ("metal" in name or "apple" in name) or (
        platform == "darwin" and "compute_capability" not in details)
    assert is_apple_gpu(details, platform) is expected


def fake_gpu_engine(details: dict, plugin: str | None) -> TensorFlowEngine:
    gpu = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
    with mock.patch.object(tf.config, "list_physical_devices", return_value=[gpu]), \
            mock.patch.object(tf.config.experimental, "get_device_details",
                              return_value=details), \
            mock.patch.object(tf_engine, "_plugin_version", return_value=plugin), \
            mock.patch.object(tf_engine.sys, "platform", "darwin"):
        return TensorFlowEngine()


@pytest.mark.parametrize("plugin", ["1.2.0", None])  # tensorflow-metal, or another plugin
def test_a_metal_device_from_any_plugin_is_described_as_an_apple_gpu(plugin):
    device = fake_gpu_engine({"device_name": "METAL"}, plugin).describe_device()
    assert device.kind == "metal" and not device.xla and not device.bf16_fast


def test_a_plugin_that_registers_no_gpu_is_said_at_trainer_time_and_in_info():
    with mock.patch.object(tf.config, "list_physical_devices", return_value=[]), \
            mock.patch.object(tf_engine, "_plugin_version", return_value="1.2.0"), \
            pytest.warns(RuntimeWarning, match="registered no GPU, so training runs on the CPU"):
        engine = TensorFlowEngine()
    assert engine.describe_device().kind == "cpu"
    facts = environment()
    facts["tensorflow_metal"] = {"installed": True, "active": False}
    facts["tensorflow_metal_check"] = "ok (1.2.0 with TensorFlow 2.19.1)"
    lines = info_lines(facts)
    assert "tensorflow-metal: installed, NOT driving the device" in lines
    assert any("no Metal GPU registered, training on the CPU" in line for line in lines)


def test_no_plugin_and_no_gpu_says_nothing():
    with mock.patch.object(tf.config, "list_physical_devices", return_value=[]), \
            mock.patch.object(tf_engine, "_plugin_version", return_value=None), \
            warnings.catch_warnings():
        warnings.simplefilter("error")
        TensorFlowEngine()


def test_python_without_metal_wheels_on_a_mac_is_said_at_trainer_time():
    versions = {"python": "3.13.1", "tensorflow": "2.21.0", "tensorflow-metal": None}
    with mock.patch.object(tf.config, "list_physical_devices", return_value=[]), \
            mock.patch.object(tf_engine, "_plugin_version", return_value=None), \
            mock.patch.object(tf_engine.metal, "is_apple_silicon", return_value=True), \
            mock.patch.object(tf_engine.metal, "installed_versions", return_value=versions), \
            pytest.warns(RuntimeWarning, match=r"no wheels for Python 3\.13\.1.*runs on the CPU"):
        TensorFlowEngine()


@pytest.mark.parametrize("details", [{}, {"device_name": "Apple M3 Max"}])
def test_the_community_tensorflow_metal_plugin_is_metal(details):
    # tensorflow-metal-plugin 0.4.1 (TF 2.21) installs no "tensorflow-metal" distribution:
    # its GPU is known by the device (a macOS GPU without a compute capability, or named Apple).
    def version(dist: str) -> str:
        if dist == "tensorflow-metal-plugin":
            return "0.4.1"
        raise tf_engine.importlib.metadata.PackageNotFoundError(dist)

    gpu = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
    with mock.patch.object(tf.config, "list_physical_devices", return_value=[gpu]), \
            mock.patch.object(tf.config.experimental, "get_device_details",
                              return_value=details), \
            mock.patch.object(tf_engine.importlib.metadata, "version", side_effect=version), \
            mock.patch.object(tf_engine.sys, "platform", "darwin"), warnings.catch_warnings():
        warnings.simplefilter("error")  # a GPU is registered: nothing to warn about
        engine = TensorFlowEngine()
        device = engine.describe_device()
    assert device.kind == "metal" and not device.xla and not device.bf16_fast
    assert engine.cpu_placement() is not None  # the CPU check and the CPU candidate
