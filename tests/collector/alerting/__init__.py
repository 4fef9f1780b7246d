"""Tests of `collector.alerting`: lifecycle, channels, acknowledgements."""
