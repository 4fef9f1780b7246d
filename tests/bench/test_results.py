"""Figures that cannot go stale: every bench declares its last-line keys, has a recorded
result with those keys, and bench/RESULTS.md is exactly what the records and notes give.

When one of these fails after a bench changed: `make bench` (or `python -m bench.run_all
--only NAME`) records it again and regenerates RESULTS.md; after a notes edit,
`python -m bench.render_results`.
"""

from __future__ import annotations

import ast
import json
import shlex
from pathlib import Path

import pytest

from bench import record, render_results
from bench.catalog import BENCH_DIR, BENCHES, bench_modules, form_of

BENCHES_FOUND = bench_modules()


def declared_keys(bench: str) -> tuple[str, ...]:
    """RESULT_KEYS of a bench, read from its source (a literal tuple of strings)."""
    tree = ast.parse((BENCH_DIR / f"{bench}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "RESULT_KEYS"):
            value = ast.literal_eval(node.value)
            assert isinstance(value, tuple) and all(isinstance(k, str) for k in value), (
                f"bench/{bench}.py: RESULT_KEYS must be a literal tuple of strings")
            return value
    raise AssertionError(f"bench/{bench}.py declares no module-level RESULT_KEYS")


def recorded(bench: str) -> dict[str, object]:
    path = render_results.RESULTS_DIR / f"{bench}.json"
    assert path.exists(), (
        f"bench/{bench}.py has no recorded result: run `python -m bench.run_all --only {bench}`")
    record: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return record


def test_the_benches_are_found() -> None:
    # Guards the parametrisations below against an empty list passing vacuously.
    assert {"rules", "ingest", "alert_latency"} <= set(BENCHES_FOUND)


@pytest.mark.parametrize("bench", BENCHES_FOUND)
def test_declared_keys_are_the_recorded_keys(bench: str) -> None:
    result = recorded(bench)["result"]
    assert isinstance(result, dict)
    declared = declared_keys(bench)
    assert len(set(declared)) == len(declared), f"bench/{bench}.py: a key declared twice"
    assert set(result) == set(declared), (
        f"bench/{bench}.py declares {sorted(declared)} but bench/results/{bench}.json has "
        f"{sorted(result)}: record it again (`python -m bench.run_all --only {bench}`)")


@pytest.mark.parametrize("bench", BENCHES_FOUND)
def test_the_record_names_its_provenance(bench: str) -> None:
    record = recorded(bench)
    assert record["bench"] == bench
    p = record["provenance"]
    assert isinstance(p, dict)
    command = shlex.split(p["command"])
    assert command[:3] == ["python", "-m", f"bench.{bench}"]
    assert p["form"] == form_of(bench, command[3:]), (
        f"bench/results/{bench}.json was recorded with {p['form']} arguments that are no "
        "longer that form in bench/catalog.py: record it again")
    for key in ("commit", "dirty", "started_utc", "machine", "load_average_start",
                "load_average_end"):
        assert key in p, f"bench/results/{bench}.json: provenance lacks {key}"


def test_every_bench_is_in_the_catalog_and_every_entry_is_a_bench() -> None:
    assert set(BENCHES_FOUND) == set(BENCHES), (
        "bench/catalog.py BENCHES must list exactly the bench modules: "
        f"missing {sorted(set(BENCHES_FOUND) - set(BENCHES))}, "
        f"no such module {sorted(set(BENCHES) - set(BENCHES_FOUND))}")


def test_every_notes_file_belongs_to_a_bench() -> None:
    stray = sorted(p.stem for p in render_results.NOTES_DIR.glob("*.md")
                   if p.stem not in BENCHES_FOUND)
    assert stray == [], f"bench/notes/ files without a bench (not rendered): {stray}"


def test_results_md_is_what_the_records_and_notes_give() -> None:
    current = render_results.RESULTS_MD.read_text(encoding="utf-8")
    assert current == render_results.render(), (
        "bench/RESULTS.md is stale: run `python -m bench.render_results` (after "
        "`make bench` if the figures changed); never edit it by hand")


def test_a_stale_results_md_is_told_apart(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # The comparison above must be able to fail: a changed record or note changes the text.
    results, notes = tmp_path / "results", tmp_path / "notes"
    notes.mkdir()
    monkeypatch.setattr("sys.argv", ["bench/rules.py"])
    result = dict.fromkeys(declared_keys("rules"), 1.5)
    record.write_record(results, "rules", record.record_of("rules", result))
    before = render_results.render(results, notes)
    assert "| tick_ms_median | 1.5 |" in before
    (notes / "rules.md").write_text("## A topic\n\nprose\n", encoding="utf-8")
    with_note = render_results.render(results, notes)
    assert with_note != before and "### A topic" in with_note
    result["tick_ms_median"] = 2.5
    record.write_record(results, "rules", record.record_of("rules", result))
    assert render_results.render(results, notes) != with_note
