"""Tests of `orchestration`: services, demo, chaos, cluster, admin and deployment."""
