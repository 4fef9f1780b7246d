"""Helpers shared by the tests (and by bench/, which compares against the rules oracle)."""
