"""Test-suite plumbing shared by every test module."""

import os

import pytest
from hypothesis import settings

# CI runs one fixed set of drawn examples (HYPOTHESIS_PROFILE=ci in .ci/run), so that a
# submission lands or not on its merits, not on the draw; a plain `make test` explores anew
# each run, which is how the suite finds new failing cases.
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

#: The suite's slowest tests (subprocesses, several trainers, auto trials), by node id prefix,
#: slowest first: `pytest -n 2 --dist worksteal` starts them first, so that the run ends
#: on short tests instead of one worker finishing a long one while the other waits. Only
#: the order changes; a class or module named here moves whole (its class set-up runs once).
SLOW_FIRST = (
    "tests/test_multi_worker.py",
    "tests/test_backends.py::JaxTest",
    "tests/test_backends.py::TorchTest",
    "tests/test_mps.py",
    "tests/test_device_counts.py::TensorFlowDeviceCountTest",
    "tests/test_examples.py::test_digits_cnn",
    "tests/test_device_counts.py::JaxDeviceCountTest",
    "tests/test_startup.py::test_info_prints",
    "tests/test_startup.py::test_debug_leaves",
    "tests/test_docs.py::test_python_block_runs[README.md",
    "tests/test_demo.py::test_auto_keeping",
    "tests/test_auto_cache.py::test_a_new_process",
    "tests/test_shared_state.py::UserModelTest",
    "tests/test_distributed.py::DistributedTest",
    "tests/test_bench.py::CliTest",
    "tests/test_bench.py::RunnersTest",
    "tests/test_demo.py::test_explicit_mixed",
    "tests/test_demo.py::test_example_script",
    "tests/test_docs.py::test_python_block_runs[docs/json-schema.md",
    "tests/test_determinism.py::DeterminismTest",
    "tests/test_plan_in_force.py::MirroredPlanTest",
    "tests/test_loop.py::FusedMatchesStepTest",
    "tests/test_numeric_guarantees.py::SeedFixesXlaTest",
    "tests/test_checkpoint.py::RoundTripTest",
)


def _slowness(item) -> int:
    """The place of `item` in `SLOW_FIRST` (the others after, in their collected order)."""
    node = item.nodeid.replace("\\", "/")
    return next((i for i, p in enumerate(SLOW_FIRST) if node.startswith(p)), len(SLOW_FIRST))


def pytest_collection_modifyitems(items):
    # tf.test.TestCase carries a `test_session` context helper that pytest collects and
    # reports as skipped ("Not a test"); it is not a test, so leave it out.
    items[:] = sorted((item for item in items if item.name != "test_session"), key=_slowness)


@pytest.fixture(autouse=True)
def _decision_cache(tmp_path_factory, monkeypatch):
    """Each test gets an empty decision cache of its own, never the user's real one.

    `TrainerConfig.decision_cache` defaults to "cache": without this, a test would write to
    the home folder, and a test that expects trials would find a decision an earlier test
    stored (an order-dependent suite). Subprocesses inherit the variable.
    """
    from gometal_keras.planning.decision_cache import ENV

    monkeypatch.setenv(ENV, str(tmp_path_factory.mktemp("decision-cache")))
