"""firmware_sim: sensor firmware and a GSM modem played on pseudo-terminals.

Encodes from the datasheets on its own (it never imports the agent's frame code), so the
simulator and the agent check each other.
"""

from firmware_sim.gsm_modem import GsmModem
from firmware_sim.pms5003_device import Pms5003Device
from firmware_sim.scenarios import Clean, Episode
from firmware_sim.sds011_device import Sds011Device

__all__ = [
    "Clean",
    "Episode",
    "GsmModem",
    "Pms5003Device",
    "Sds011Device",
]
