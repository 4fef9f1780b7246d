"""Write bench/RESULTS.md from the recorded results and the hand-written notes.

    python -m bench.render_results [--check]

Sources: `bench/results/<bench>.json` (written by `make bench`, see bench/record.py) for
the figures and where they came from, `bench/notes/<bench>.md` for the prose (headings one
level down, under the bench's own). The output depends on nothing else, so
tests/bench/test_results.py can tell a stale RESULTS.md from a fresh one. `--check` writes
nothing and exits 1 when RESULTS.md is not what it would write.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if not __package__:  # run as `python bench/render_results.py`: the repo root first instead
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.catalog import BENCH_DIR, bench_modules

RESULTS_DIR = BENCH_DIR / "results"
NOTES_DIR = BENCH_DIR / "notes"
RESULTS_MD = BENCH_DIR / "RESULTS.md"

HEADER = """\
# Benchmark results

<!-- Generated file: do not edit. -->
**This file is generated** by `python -m bench.render_results` from the records in
`bench/results/*.json` (written by `make bench`) and the notes in `bench/notes/*.md`.
To change the figures, run the benches (`make bench`, or `python -m bench.run_all --only
NAME`); to change the prose, edit the notes and re-render. A test fails when this file is
not what the records and notes give.

Each figure table is the bench's last recorded run, with the commit, date, machine, load
and command it came from. The machine is a shared 2-core VM unless the record says
otherwise; compare ratios taken within one run, not absolute rates across runs. Figures
in the notes are historical unless they say otherwise: each keeps the date and context it
was measured in.
"""


def docstring_title(bench: str) -> str:
    """The first paragraph of the bench's docstring, on one line (read, not imported)."""
    tree = ast.parse((BENCH_DIR / f"{bench}.py").read_text(encoding="utf-8"))
    doc = (ast.get_docstring(tree) or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested objects become dotted keys; everything else is one cell."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, value


def cell(value: Any) -> str:
    if value is None:
        text = "—"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = f"{value:,}"
    elif isinstance(value, float):
        text = f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1e15 else repr(value)
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False)
    return text.replace("|", "\\|").replace("\n", " ")


def provenance_text(record: dict[str, Any]) -> str:
    p = record["provenance"]
    m = p["machine"]
    commit = (p["commit"] or "unknown commit")[:10]
    tree = {True: ", uncommitted changes in the tree", False: "", None: ""}[p["dirty"]]
    status = p.get("exit_status")
    exit_text = f"; **exit status {status}**" if status not in (None, 0) else ""
    load0, load1 = p["load_average_start"], p["load_average_end"]
    return (
        f"Last run: `{p['command']}` ({p['form']} form), commit `{commit}`{tree}, "
        f"{p['started_utc'].replace('T', ' ').replace('Z', ' UTC')}, "
        f"{p['seconds']:,} s{exit_text}. "
        f"Machine: {m['cores']} cores, {m['cpu_model'] or 'CPU model unknown'}, "
        f"{m['ram_gib']} GiB RAM, Python {m['python']}, {m['system']}; "
        f"load average (1/5/15 min) {' / '.join(f'{x:.2f}' for x in load0)} at start, "
        f"{' / '.join(f'{x:.2f}' for x in load1)} at end."
    )


_HEADING = re.compile(r"^(#{1,5}) ")
_FENCE = re.compile(r"^\s*(```|~~~)")


def demote_headings(markdown: str) -> str:
    """One level down for every heading outside fenced code blocks."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and _HEADING.match(line):
            line = "#" + line
        out.append(line)
    return "\n".join(out)


def load_records(results: Path) -> dict[str, dict[str, Any]]:
    records = {}
    for path in sorted(results.glob("*.json")):
        records[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    return records


def render(results: Path = RESULTS_DIR, notes: Path = NOTES_DIR) -> str:
    records = load_records(results)
    benches = bench_modules()
    parts = [HEADER]
    parts.append("| bench | form | commit | run (UTC) | load 1 min start → end | seconds |\n"
                 "|---|---|---|---|---|---|")
    for b in benches:
        r = records.get(b)
        if r is None:
            parts.append(f"| [{b}](#{b}) | — | not recorded | | | |")
            continue
        p = r["provenance"]
        parts.append(
            f"| [{b}](#{b}) | {p['form']} | `{(p['commit'] or '?')[:10]}`"
            f"{'+' if p['dirty'] else ''} | {p['started_utc'][:16].replace('T', ' ')} | "
            f"{p['load_average_start'][0]:.2f} → {p['load_average_end'][0]:.2f} | "
            f"{p['seconds']:,} |")
    parts.append("")
    for b in benches:
        title = docstring_title(b)
        parts.append(f"## {b}\n\n`bench/{b}.py`{': ' + title if title else ''}\n")
        r = records.get(b)
        if r is None:
            parts.append("No recorded result yet: run `python -m bench.run_all --only "
                         f"{b}`.\n")
        else:
            parts.append(provenance_text(r) + "\n")
            parts.append("| figure | value |\n|---|---|")
            parts.extend(f"| {cell(k)} | {cell(v)} |" for k, v in flatten(r["result"]))
            parts.append("")
        note = notes / f"{b}.md"
        if note.exists():
            parts.append(demote_headings(note.read_text(encoding="utf-8").strip()) + "\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if bench/RESULTS.md is stale")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = RESULTS_MD.read_text(encoding="utf-8") if RESULTS_MD.exists() else ""
        if current != text:
            print("bench/RESULTS.md is stale: run `python -m bench.render_results`",
                  file=sys.stderr)
            return 1
        return 0
    RESULTS_MD.write_text(text, encoding="utf-8")
    print(f"wrote {RESULTS_MD.relative_to(BENCH_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
