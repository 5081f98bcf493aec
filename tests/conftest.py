"""Test-suite plumbing shared by every test module."""

import pytest


def pytest_collection_modifyitems(items):
    # tf.test.TestCase carries a `test_session` context helper that pytest collects and
    # reports as skipped ("Not a test"); it is not a test, so leave it out.
    items[:] = [item for item in items if item.name != "test_session"]


@pytest.fixture(autouse=True)
def _decision_cache(tmp_path_factory, monkeypatch):
    """Each test gets an empty decision cache of its own, never the user's real one.

    `TrainerConfig.decision_cache` defaults to "cache": without this, a test would write to
    the home folder, and a test that expects trials would find a decision an earlier test
    stored (an order-dependent suite). Subprocesses inherit the variable.
    """
    from gometal_keras.decision_cache import ENV

    monkeypatch.setenv(ENV, str(tmp_path_factory.mktemp("decision-cache")))
