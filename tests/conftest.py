"""Test-suite plumbing shared by every test module."""


def pytest_collection_modifyitems(items):
    # tf.test.TestCase carries a `test_session` context helper that pytest collects and
    # reports as skipped ("Not a test"); it is not a test, so leave it out.
    items[:] = [item for item in items if item.name != "test_session"]
