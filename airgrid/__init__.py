"""airgrid."""
