"""Tests of the core package `airgrid`: wire format, config, the import contract."""
