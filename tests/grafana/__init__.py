"""Tests of `grafana`: dashboards as code, their queries, the push."""
