"""Tests of `edge_agent`: drivers, sampling, outbox, publisher, CLI."""
