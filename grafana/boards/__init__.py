"""The airgrid dashboards, one module each."""
