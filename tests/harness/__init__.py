"""Tests of the harness itself (tests.support): the integration marking."""
