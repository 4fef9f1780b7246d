"""edge_agent/drivers."""
