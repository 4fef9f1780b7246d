"""Alert lifecycle and fan-out: transitions from the rule engine → grid workers and systems."""
