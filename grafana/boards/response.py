"""响应时效 (response times): how fast work orders are acknowledged, reached and handled.

The collector writes one `work_order_steps` point per step of an alert's or a complaint's
work order (`response_s`: seconds from the order's opening to the step; `within_2h`: 1 when
within two hours), so the median, the 90th percentile and the share handled within 2 h are
plain InfluxQL aggregates, by township, grid, worker and cause.
"""

from __future__ import annotations

from grafana import panels
from grafana.model import Dashboard, Grid, Target, Variable
from grafana.schema import WORK_ORDER_STEPS

UID = "airgrid-response"

TOWNSHIP = Variable("township", "Township 乡镇",
                    f'SHOW TAG VALUES FROM "{WORK_ORDER_STEPS}" WITH KEY = "township"')
GRID = Variable("grid", "Grid 网格",
                f'SHOW TAG VALUES FROM "{WORK_ORDER_STEPS}" WITH KEY = "grid" WHERE '
                '"township" =~ /^$township$/')
SOURCE = Variable("source", "Source 来源",
                  f'SHOW TAG VALUES FROM "{WORK_ORDER_STEPS}" WITH KEY = "source"')
FILTER = '"township" =~ /^$township$/ AND "grid" =~ /^$grid$/ AND "source" =~ /^$source$/'
#: the figures of one group of steps: median, 90th percentile, share within 2 h, count
FIGURES = ('median("response_s") AS "median_s", percentile("response_s", 90) AS "p90_s", '
           'mean("within_2h") * 100 AS "within_2h_pct", count("response_s") AS "orders"')
FIGURE_COLUMNS = ("median_s", "p90_s", "within_2h_pct", "orders")
STEP_TITLES = {"acknowledged": "收到 acknowledge", "arrived": "到场 arrive",
               "handled": "处置完成 handle"}


def step_query(step: str, select: str, tail: str = "") -> str:
    return (f'SELECT {select} FROM "{WORK_ORDER_STEPS}" WHERE "step" = \'{step}\' AND '
            f"{FILTER} AND $timeFilter{tail}")


def _minutes_thresholds() -> dict[str, object]:
    return {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                          {"color": "orange", "value": 3600},
                                          {"color": "red", "value": 7200}]}


def build() -> Dashboard:
    stats = []
    for i, (step, title) in enumerate(STEP_TITLES.items()):
        stats.append(panels.stat(
            f"Median time to {title.split()[1]} {title.split()[0]}用时中位数",
            Grid(i * 4, 0, 4, 4),
            [Target("A", step_query(step, 'median("response_s") AS "median_s"'),
                    ("median_s",))],
            "s", f"From the order's opening (alert fired, complaint received) to {step}.",
            _minutes_thresholds()))
    stats.append(panels.stat(
        "90th percentile to handle 处置用时P90", Grid(12, 0, 4, 4),
        [Target("A", step_query("handled", 'percentile("response_s", 90) AS "p90_s"'),
                ("p90_s",))],
        "s", "Nine orders in ten were handled within this time.", _minutes_thresholds()))
    stats.append(panels.stat(
        "Handled within 2 h 两小时内处置率", Grid(16, 0, 4, 4),
        [Target("A", step_query("handled", 'mean("within_2h") * 100 AS "within_2h_pct"'),
                ("within_2h_pct",))],
        "percent", "Share of handled orders handled within two hours of opening.",
        {"mode": "absolute", "steps": [{"color": "red", "value": None},
                                       {"color": "orange", "value": 80},
                                       {"color": "green", "value": 95}]}, decimals=1))
    stats.append(panels.stat(
        "Handled orders 已处置工单", Grid(20, 0, 4, 4),
        [Target("A", step_query("handled", 'count("response_s") AS "orders"'), ("orders",))],
        "none", "Work orders handled in the time range."))
    for s in stats:
        s.defaults["noValue"] = "–"
    tables = []
    for i, (key, title) in enumerate((("township", "by township 按乡镇"),
                                      ("grid", "by grid 按网格"),
                                      ("worker", "by worker 按网格员"),
                                      ("cause", "by cause 按原因"))):
        tables.append(panels.table(
            f"Handling times {title}", Grid((i % 2) * 12, 4 + (i // 2) * 8, 12, 8),
            [Target("A", step_query("handled", FIGURES, f' GROUP BY "{key}"'),
                    (key, *FIGURE_COLUMNS), "table")],
            "s", f"Per {key}: median and 90th percentile of the time to handle, share "
            "within 2 h (%), orders handled.",
            [panels.by_name("within_2h_pct", unit="percent", decimals=1),
             panels.by_name("orders", unit="none")]))
    per_step = panels.table(
        "Each step by worker 各环节用时（按网格员）", Grid(0, 20, 24, 8),
        [Target("A", f'SELECT {FIGURES} FROM "{WORK_ORDER_STEPS}" WHERE {FILTER} AND '
                     '$timeFilter GROUP BY "step", "worker"',
                ("step", "worker", *FIGURE_COLUMNS), "table")],
        "s", "Acknowledge, arrive, handle, escalate: the same figures per step and worker.",
        [panels.by_name("within_2h_pct", unit="percent", decimals=1),
         panels.by_name("orders", unit="none")])
    trend = panels.timeseries(
        "Response times 响应用时", Grid(0, 28, 24, 8),
        [Target("A", f'SELECT "response_s" FROM "{WORK_ORDER_STEPS}" WHERE {FILTER} AND '
                     '$timeFilter GROUP BY "step"', ("step", "response_s"), alias="$tag_step")],
        "s", "Each step: seconds from the order's opening.", draw="points",
        thresholds=_minutes_thresholds())
    return Dashboard(
        UID, "Air quality — response times 响应时效",
        "How fast alerts and complaints are acknowledged, reached and handled: median, 90th "
        "percentile and share within two hours, by township, grid, worker and cause.",
        [*stats, *tables, per_step, trend], [TOWNSHIP, GRID, SOURCE], [], time_from="now-7d")
