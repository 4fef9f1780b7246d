"""The daily and monthly air-quality report (空气质量日报/月报) for county officials.

Reads what the collector stores (InfluxDB `readings_hourly`, `readings`, `device_status`;
the alert store), computes HJ 633-2026 daily AQI with `alert_rules.aqi`, renders PDF, PNG
or HTML with matplotlib and Noto Sans CJK, and delivers to a folder, by e-mail and as a
CloudEvent on the MQTT bus.
"""
