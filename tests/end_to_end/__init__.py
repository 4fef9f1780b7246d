"""Serial bytes from simulated sensors to rows in InfluxDB and alerts, every hop real."""
