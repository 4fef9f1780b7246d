"""Tests of `firmware_sim`: the simulated sensors and their faults."""
