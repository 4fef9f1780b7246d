"""grafana: the dashboards as code, their generated JSON, provisioning and push.
"""

from grafana.generate import dashboards
from grafana.model import Dashboard

__all__ = [
    "Dashboard",
    "dashboards",
]
