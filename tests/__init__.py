"""The test suite; its folders mirror the packages, shared helpers live in tests.support."""
