"""alert_rules."""
