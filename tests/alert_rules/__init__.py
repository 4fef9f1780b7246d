"""Tests of `alert_rules`: rule kinds, AQI, snapshots, hand-over, CLI."""
