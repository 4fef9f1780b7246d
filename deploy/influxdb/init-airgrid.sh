#!/bin/bash
# Runs once, after the InfluxDB image's first-start setup (docker-entrypoint-initdb.d):
# an InfluxQL mapping for the bucket, and 1.x-compatible logins for the collector (write)
# and Grafana (read), whose passwords come from secrets/influxdb.env.
set -euo pipefail
: "${AIRGRID_COLLECTOR_INFLUX_PASSWORD:?set in secrets/influxdb.env}"
: "${AIRGRID_GRAFANA_INFLUX_PASSWORD:?set in secrets/influxdb.env}"
bucket_id="${DOCKER_INFLUXDB_INIT_BUCKET_ID:-$(influx bucket list --name "${DOCKER_INFLUXDB_INIT_BUCKET}" --hide-headers | cut -f1)}"
influx v1 dbrp create --db airgrid --rp autogen --bucket-id "${bucket_id}" --default
influx v1 auth create --username collector --password "${AIRGRID_COLLECTOR_INFLUX_PASSWORD}" \
    --write-bucket "${bucket_id}" --read-bucket "${bucket_id}"
influx v1 auth create --username grafana --password "${AIRGRID_GRAFANA_INFLUX_PASSWORD}" \
    --read-bucket "${bucket_id}"
