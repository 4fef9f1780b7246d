"""InfluxDB 2.x / 3.x storage sink: POST /api/v2/write through influxdb-client."""

from __future__ import annotations

from typing import Any

from collector.errors import Rejected, RetryLater


class InfluxV2Sink:
    """Synchronous writes (the pipeline acks only after they return), ms precision, gzip.

    influxdb-client's own retries stay off: the collector's writer retries and spools, so
    a batch is never held in two retry loops at once.
    """

    def __init__(self, url: str, token: str, org: str, bucket: str, timeout_s: float = 10.0,
                 gzip: bool = True) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision

        self.url = url
        self.bucket = bucket
        self.org = org
        self._precision = WritePrecision.MS
        self._client: Any = InfluxDBClient(url=url, token=token, org=org,
                                      timeout=int(timeout_s * 1000), enable_gzip=gzip,
                                      retries=False)
        self._write_api: Any = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        from influxdb_client.rest import ApiException

        try:
            self._write_api.write(bucket=self.bucket, org=self.org, record="\n".join(lines),
                                  write_precision=self._precision)
        except ApiException as exc:
            status = int(exc.status or 0)
            body = (exc.body or b"")
            detail = (body.decode(errors="replace") if isinstance(body, bytes) else str(body))
            if status >= 500 or status in (0, 429):
                raise RetryLater(f"InfluxDB {status}: {detail[:500]}") from exc
            raise Rejected(f"InfluxDB {status}: {detail[:500]}") from exc
        except Exception as exc:  # urllib3 connection errors and timeouts have no common base
            raise RetryLater(f"InfluxDB at {self.url}: {exc}") from exc

    def close(self) -> None:
        self._client.close()
