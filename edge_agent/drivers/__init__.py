"""Sensor drivers, and the registry of the serial ones by model name."""

from __future__ import annotations

from edge_agent.drivers import pms5003, sds011
from edge_agent.drivers.base import SerialProtocol


def _pms(model: str, with_env: bool = False) -> SerialProtocol:
    return SerialProtocol(
        model=model,
        baudrate=9600,  # datasheet: 9600 8N1
        new_decoder=lambda: pms5003.PmsStreamDecoder(with_env=with_env),
        is_measurement=lambda item: isinstance(item, pms5003.PmsFrame | pms5003.PmsTFrame),
        configure=lambda polled: pms5003.CMD_PASSIVE if polled else pms5003.CMD_ACTIVE,
        poll=pms5003.CMD_READ,
        wake=pms5003.CMD_WAKE,
        sleep=pms5003.CMD_SLEEP,
        pm_range_max=pms5003.PM_RANGE_MAX,
    )


SERIAL_PROTOCOLS: dict[str, SerialProtocol] = {
    "pms5003": _pms("pms5003"),
    "pms7003": _pms("pms7003"),
    "pmsa003": _pms("pmsa003"),
    "pms5003t": _pms("pms5003t", with_env=True),
    "sds011": SerialProtocol(
        model="sds011",
        baudrate=9600,  # protocol V1.3: 9600 8N1
        new_decoder=sds011.SdsStreamDecoder,
        is_measurement=lambda item: isinstance(item, sds011.SdsFrame),
        configure=sds011.set_query_mode,
        poll=sds011.CMD_QUERY,
        wake=sds011.CMD_WORK,
        sleep=sds011.CMD_SLEEP,
        pm_range_max=sds011.PM_RANGE_MAX,
    ),
}
I2C_MODELS = ("pmsa003i",)
SENSOR_MODELS = (*SERIAL_PROTOCOLS, *I2C_MODELS)
