"""Tests of `collector`: decode, dedup, storage, registry, operations."""
