"""Drawing the report: two A4 pages of matplotlib figures → PDF, PNG or HTML.

Every number on the page comes from `compute.Report`; the summary from `summary`.
"""

from __future__ import annotations

import base64
import html
import io
import math
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from report import summary
from report.compute import HOUR_THRESHOLDS, Report, TownshipRow
from report.fonts import setup_matplotlib
from report.labels import LABELS, t

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

A4 = (8.27, 11.69)  # inches
FORMATS = ("pdf", "png", "html")
MAX_TOWNSHIPS = 24
MAX_ISSUES = 12
GREY = "#cccccc"
NO_LINE_START = "，。；：、）」』！？,.;:)!?%"


def wrap(text: str, em: float) -> list[str]:
    """Lines of at most `em` font-sizes wide (CJK characters are one em, others ~0.55)."""
    lines, cur, width = [], "", 0.0
    for ch in text:
        w = 1.0 if unicodedata.east_asian_width(ch) in "WF" else 0.55
        # Closing punctuation never starts a line (kinsoku): it overhangs instead.
        if width + w > em and cur and ch not in NO_LINE_START:
            cut = cur.rfind(" ") if w < 1 and " " in cur else -1
            if cut > 0:  # English: break at the last space
                lines.append(cur[:cut])
                cur = cur[cut + 1:]
                width = sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.55
                            for c in cur)
            else:
                lines.append(cur)
                cur, width = "", 0.0
        cur += ch
        width += w
    if cur:
        lines.append(cur)
    return lines


def _num(x: float, digits: int = 1) -> str:
    return "—" if math.isnan(x) else f"{x:.{digits}f}"


def _signed(x: float | None) -> str:
    return "—" if x is None else f"{x:+.1f}"


def _aqi_text(x: float) -> str:
    return "—" if math.isnan(x) else str(int(x))


def _text_color(bg: str) -> str:
    r, g, b = (int(bg.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"


def township_cells(r: Report, lang: str) -> tuple[list[str], list[list[str]], list[str]]:
    prev = "col_prev_monthly" if r.period.kind == "monthly" else "col_prev_daily"
    head = [t("col_town", lang), t("col_pm25", lang), t("col_aqi", lang), t("col_cat", lang),
            t(prev, lang), t("col_year", lang),
            *(t("col_over", lang, t=f"{th:.0f}") for th in HOUR_THRESHOLDS),
            t("col_complete", lang)]
    rows, colors = [], []
    for row in r.townships[:MAX_TOWNSHIPS]:
        res = row.result
        cat = (res.category_zh if lang == "zh" else res.category_en) if res.has_data \
            else t("no_data", lang)
        rows.append([row.township, _num(row.pm2_5), _aqi_text(res.aqi), cat,
                     _signed(row.change_prev), _signed(row.change_year),
                     *(str(row.hours_over[th]) for th in HOUR_THRESHOLDS),
                     f"{100 * row.completeness:.0f}%"])
        colors.append(res.color if res.has_data else GREY)
    return head, rows, colors


def alert_lines(r: Report, lang: str) -> list[str]:
    a = r.alerts
    if a is None:
        return [t("alerts_none", lang), t("complaints", lang)]

    def mins(m: float | None) -> str:
        return "—" if m is None else t("minutes", lang, m=m)

    out = [t("alerts_line", lang, opened=a.opened, acked=a.acknowledged, handled=a.handled,
             open=a.still_open),
           t("alerts_median", lang, ack=mins(a.median_ack_min), handle=mins(a.median_handle_min))]
    if a.slowest:
        out.append(t("slowest", lang))
        out += ["  " + t("slow_item", lang, grid=s.grid or "—", town=s.township or "—", id=s.id,
                         subject=s.subject, minutes=mins(s.minutes),
                         open=t("still_open", lang) if s.open else "")
                for s in a.slowest]
    out.append(t("complaints", lang))
    return out


def issue_lines(r: Report, lang: str) -> list[str]:
    out = [t("completeness_line", lang, devices=r.devices, pct=f"{100 * r.completeness:.1f}%")]
    if not r.issues:
        return [*out, t("no_issues", lang)]
    for i in r.issues[:MAX_ISSUES]:
        out.append("  " + t("issue_item", lang, device=i.info.device, town=i.info.township or "—",
                            site=i.info.site, missing=i.hours_missing,
                            flag=t("flagged", lang, n=i.flagged) if i.flagged else "",
                            off=t("offline", lang) if i.offline else ""))
    if len(r.issues) > MAX_ISSUES:
        out.append("  " + t("more", lang, n=len(r.issues) - MAX_ISSUES))
    return out


def title(r: Report, lang: str, county: str) -> str:
    key = "monthly_title" if r.period.kind == "monthly" else "daily_title"
    return t(key, lang, county=county or t("county", lang))


# --- pages ------------------------------------------------------------------------------

def _text_block(fig: Figure, lines: list[str], top: float, size: float, em: float,
                step: float, bottom: float) -> float:
    y = top
    for line in lines:
        for part in wrap(line, em):
            if y < bottom:
                return y
            fig.text(0.06, y, part, fontsize=size, va="top")
            y -= step
    return y


def _aqi_box(fig: Figure, r: Report, lang: str) -> None:
    c = r.county
    ax = fig.add_axes((0.06, 0.60, 0.30, 0.17))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor(c.color)
    fg = _text_color(c.color)
    ax.text(0.5, 0.86, t("aqi", lang), ha="center", fontsize=9, color=fg, transform=ax.transAxes)
    ax.text(0.5, 0.55, _aqi_text(c.aqi), ha="center", fontsize=30, color=fg,
            transform=ax.transAxes)
    cat = (c.category_zh if lang == "zh" else c.category_en) if c.has_data else t("no_data", lang)
    prim = summary.POLLUTANT_NAMES.get(c.primary, t("none", lang))
    ax.text(0.5, 0.36, f"{cat} · {t('primary', lang)} {prim}", ha="center", fontsize=9,
            color=fg, transform=ax.transAxes)
    ax.text(0.5, 0.10, f"PM2.5 {_num(c.pm2_5)} (IAQI {_aqi_text(c.iaqi['pm2_5'])})  "
            f"PM10 {_num(c.pm10)} (IAQI {_aqi_text(c.iaqi['pm10'])}) µg/m³",
            ha="center", fontsize=7, color=fg, transform=ax.transAxes)


def _hourly_curve(fig: Figure, r: Report, lang: str, std_colors: Callable[[float], str]) -> None:
    ax = fig.add_axes((0.45, 0.62, 0.50, 0.15))
    if r.period.kind == "monthly":
        vals = np.array([a.aqi for _, a in r.days])
        xs = np.arange(1, len(vals) + 1)
        ax.set_title(t("daily_curve", lang), fontsize=9)
    else:
        vals = r.hourly_aqi
        xs = np.arange(len(vals))
        ax.set_title(t("hourly_curve", lang), fontsize=9)
        ax.set_xlabel(t("hour", lang), fontsize=7)
    heights = np.nan_to_num(vals, nan=0.0)
    ax.bar(xs, heights, color=[std_colors(v) for v in vals], width=0.85)
    ax.tick_params(labelsize=7)
    ax.set_xlim(xs[0] - 0.6, xs[-1] + 0.6)


def _calendar(fig: Figure, r: Report, lang: str) -> None:
    """The bureau's calendar: one square per day in its category colour, AQI inside."""
    ax = fig.add_axes((0.06, 0.30, 0.88, 0.26))
    ax.set_axis_off()
    ax.set_title(t("calendar", lang), fontsize=10)
    first = r.period.first
    names = ["一", "二", "三", "四", "五", "六", "日"] if lang == "zh" else \
        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    weeks = math.ceil((first.weekday() + r.period.days) / 7)
    for i, n in enumerate(names):
        ax.text(i + 0.5, -0.3, n, ha="center", fontsize=8)
    for d, a in r.days:
        slot = first.weekday() + d.day - 1
        x, y = slot % 7, slot // 7
        color = a.color if a.has_data else GREY
        ax.add_patch(_rect(x + 0.05, y + 0.05, 0.9, 0.9, color))
        fg = _text_color(color)
        ax.text(x + 0.12, y + 0.3, str(d.day), fontsize=7, color=fg)
        ax.text(x + 0.5, y + 0.68, _aqi_text(a.aqi), ha="center", fontsize=9, color=fg)
    ax.set_xlim(0, 7)
    ax.set_ylim(weeks, -0.6)


def _rect(x: float, y: float, w: float, h: float, color: str) -> Rectangle:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, facecolor=color, edgecolor="white")


def _table(fig: Figure, r: Report, lang: str, box: tuple[float, float, float, float]) -> None:
    """The ranking as plain text on rules (matplotlib's Table costs ~4× more to draw)."""
    ax = fig.add_axes(box)
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(t("ranking", lang), fontsize=10, loc="left")
    head, rows, colors = township_cells(r, lang)
    if not rows:
        ax.text(0, 0.95, t("no_data", lang), fontsize=9)
        return
    widths = np.array([1.6, 1, 0.8, 1.3, 1, 1.1, 0.9, 0.9, 0.9])
    edges = np.concatenate([[0], np.cumsum(widths) / widths.sum()])
    centers = (edges[:-1] + edges[1:]) / 2
    step = min(0.04, 0.98 / (len(rows) + 1))
    y = 0.98
    for i, text in enumerate(head):
        ax.text(centers[i], y - step / 2, text, fontsize=7.5, ha="center", va="center")
    ax.axhline(y, color="#444444", linewidth=0.8)
    ax.axhline(y - step, color="#444444", linewidth=0.6)
    for row, color in zip(rows, colors, strict=True):
        y -= step
        ax.add_patch(_rect(edges[3], y - step, edges[4] - edges[3], step, color))
        for i, text in enumerate(row):
            ax.text(centers[i], y - step / 2, text, fontsize=7.5, ha="center", va="center",
                    color=_text_color(color) if i == 3 else "black")
        ax.axhline(y - step, color="#dddddd", linewidth=0.4)
    if len(r.townships) > len(rows):
        ax.text(0, y - 1.5 * step, t("more", lang, n=len(r.townships) - len(rows)),
                fontsize=7.5, va="center")


def page_one(r: Report, lang: str, county: str, std_colors: Callable[[float], str]) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=A4)
    fig.text(0.06, 0.965, title(r, lang, county), fontsize=17, va="top")
    fig.text(0.06, 0.935, f"{r.period.label(lang)} · {r.standard}", fontsize=9, va="top")
    _text_block(fig, summary.sentences(r, lang), 0.91, 9.5, 50, 0.019, 0.79)
    _aqi_box(fig, r, lang)
    _hourly_curve(fig, r, lang, std_colors)
    if r.period.kind == "monthly":
        _calendar(fig, r, lang)
        _table(fig, r, lang, (0.04, 0.02, 0.92, 0.24))
    else:
        _table(fig, r, lang, (0.04, 0.02, 0.92, 0.54))
    return fig


def page_two(r: Report, lang: str) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=A4)
    towns = [row for row in r.townships if not math.isnan(row.pm2_5)][:MAX_TOWNSHIPS]
    ax = fig.add_axes((0.10, 0.74, 0.84, 0.20))
    ax.set_title(t("hours_over", lang), fontsize=10)
    if towns:
        x = np.arange(len(towns))
        for k, th in enumerate(HOUR_THRESHOLDS):
            ax.bar(x + (k - 0.5) * 0.4, [row.hours_over[th] for row in towns], width=0.4,
                   label=f"> {th:.0f}", color=("#ff7e00", "#99004c")[k])
        ax.set_xticks(x, [_short(row) for row in towns], fontsize=7, rotation=30, ha="right")
        ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    fig.text(0.06, 0.655, t("worst_sites", lang), fontsize=10, va="top")
    for i, s in enumerate(r.worst):
        sub = fig.add_axes((0.07 + (i % 3) * 0.31, 0.52 - (i // 3) * 0.12, 0.26, 0.085))
        sub.plot(np.arange(len(s.hourly)), s.hourly, color="#7e0023", linewidth=1)
        sub.set_xlim(0, len(s.hourly) - 1)
        for th in HOUR_THRESHOLDS:
            sub.axhline(th, color="#999999", linewidth=0.5, linestyle="--")
        sub.set_title(f"{s.info.device} {s.info.township} {_num(s.pm2_5)}", fontsize=7)
        sub.tick_params(labelsize=6)
    y = _text_block(fig, [t("alerts", lang)], 0.30, 10, 80, 0.02, 0.0)
    y = _text_block(fig, alert_lines(r, lang), y, 8, 90, 0.016, 0.14)
    y = _text_block(fig, [t("completeness", lang)], y - 0.01, 10, 80, 0.02, 0.0)
    _text_block(fig, issue_lines(r, lang), y, 8, 90, 0.016, 0.03)
    fig.text(0.06, 0.012, t("generated", lang, std=r.standard), fontsize=6)
    return fig


def _short(row: TownshipRow) -> str:
    return row.township[:8]


# --- outputs ----------------------------------------------------------------------------

def characters(r: Report, lang: str, county: str) -> str:
    """Every character the pages can print (the CJK font is cut down to these)."""
    found: set[str] = set(county) | set(r.period.label(lang)) | set(r.standard)
    for text in LABELS.values():
        found.update(text[lang])
    for s in summary.sentences(r, lang):
        found.update(s)
    found.update("一二三四五六日")
    for row in r.townships:
        found.update(row.township + row.result.category_zh + row.result.category_en)
    for d in [*(w.info for w in r.worst), *(i.info for i in r.issues)]:
        found.update(d.device + d.township + d.site + d.grid)
    for _, a in r.days:
        found.update(a.category_zh + a.category_en)
    if r.alerts is not None:
        for slow in r.alerts.slowest:
            found.update(slow.grid + slow.township + slow.subject + slow.rule)
    return "".join(sorted(found))


def pages(r: Report, lang: str, county: str, std_colors: Callable[[float], str]
          ) -> list[Figure]:
    setup_matplotlib(characters(r, lang, county))
    return [page_one(r, lang, county, std_colors), page_two(r, lang)]


def write(r: Report, fmt: str, out: Path, lang: str, county: str,
          std_colors: Callable[[float], str]) -> list[Path]:
    """Write the report; the files written (PNG: one per page, `-2` before the suffix)."""
    figs = pages(r, lang, county, std_colors)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "pdf":
        from matplotlib.backends.backend_pdf import PdfPages

        with PdfPages(out, metadata={"Title": title(r, lang, county),
                                     "Subject": r.period.label(lang)}) as pdf:
            for f in figs:
                pdf.savefig(f)
        return [out]
    if fmt == "png":
        written = []
        for i, f in enumerate(figs):
            path = out if i == 0 else out.with_name(f"{out.stem}-{i + 1}{out.suffix}")
            f.savefig(path, dpi=110)
            written.append(path)
        return written
    if fmt == "html":
        out.write_text(to_html(r, lang, county, figs), encoding="utf-8")
        return [out]
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")


def to_html(r: Report, lang: str, county: str, figs: list[Figure]) -> str:
    e = html.escape
    head, rows, colors = township_cells(r, lang)
    parts = [f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head>'
             f'<meta charset="utf-8"><title>{e(title(r, lang, county))}</title>'
             "<style>body{font-family:'Noto Sans CJK SC',sans-serif;max-width:60em;margin:auto}"
             "td,th{padding:2px 8px;border:1px solid #ddd;text-align:center}"
             "table{border-collapse:collapse}img{max-width:100%}</style></head><body>",
             f"<h1>{e(title(r, lang, county))}</h1><p>{e(r.period.label(lang))} · "
             f"{e(r.standard)}</p>", f"<h2>{e(t('summary', lang))}</h2>"]
    parts += [f"<p>{e(s)}</p>" for s in summary.sentences(r, lang)]
    parts.append(f"<h2>{e(t('ranking', lang))}</h2><table><tr>"
                 + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
    for row, color in zip(rows, colors, strict=True):
        cells = [f"<td>{e(c)}</td>" for c in row]
        cells[3] = (f'<td style="background:{color};color:{_text_color(color)}">'
                    f"{e(row[3])}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    parts.append(f"<h2>{e(t('alerts', lang))}</h2>")
    parts += [f"<p>{e(s)}</p>" for s in alert_lines(r, lang)]
    parts.append(f"<h2>{e(t('completeness', lang))}</h2>")
    parts += [f"<p>{e(s)}</p>" for s in issue_lines(r, lang)]
    for f in figs:
        buf = io.BytesIO()
        f.savefig(buf, format="png", dpi=72)
        parts.append('<img alt="" src="data:image/png;base64,'
                     + base64.b64encode(buf.getvalue()).decode() + '">')
    parts.append("</body></html>")
    return "\n".join(parts)
