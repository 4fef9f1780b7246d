"""The suite's shared fixtures and the `integration` marking live in tests.support."""

import pytest

# Helpers assert too (a collector that died while starting); show their values on failure.
pytest.register_assert_rewrite("tests.support")

pytest_plugins = ["pytester", "tests.support.integration", "tests.support.fixtures"]
