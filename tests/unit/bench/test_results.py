"""The benchmark results store: ratios, persistence and the rendered table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from bench import results
from bench.results import BenchResult


def _render(rows: list[BenchResult]) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(results.render_table(rows))
    return console.export_text()


def test_record_computes_ratio_to_baseline(tmp_path: Path) -> None:
    result = results.record(
        "broker.relay", 1500.0, "msgs/s", "broker.publish", 5000.0, directory=tmp_path
    )

    assert result.ratio == pytest.approx(0.3)
    assert result.passed is None


def test_record_without_baseline_has_no_ratio(tmp_path: Path) -> None:
    result = results.record("broker.publish", 900.0, "msgs/s", directory=tmp_path)

    assert result.ratio is None
    assert result.baseline is None


def test_record_appends_to_json_list_in_results_file(tmp_path: Path) -> None:
    results.record("a", 10.0, "msgs/s", directory=tmp_path)
    results.record("b", 30.0, "msgs/s", "a", 10.0, 2.0, directory=tmp_path)

    stored = json.loads((tmp_path / "results.json").read_text())
    assert [row["name"] for row in stored] == ["a", "b"]
    assert stored[1] == {
        "name": "b",
        "value": 30.0,
        "unit": "msgs/s",
        "baseline": "a",
        "baseline_value": 10.0,
        "ratio": 3.0,
        "target_ratio": 2.0,
        "higher_is_better": True,
    }
    assert [r.name for r in results.load(tmp_path)] == ["a", "b"]


def test_reset_empties_the_store(tmp_path: Path) -> None:
    results.record("a", 1.0, "s", directory=tmp_path)

    results.reset(tmp_path)

    assert results.load(tmp_path) == []


def test_load_without_file_is_empty(tmp_path: Path) -> None:
    assert results.load(tmp_path / "missing") == []


def test_bench_dir_comes_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRELABEL_BENCH_DIR", str(tmp_path))

    results.record("a", 1.0, "s")

    assert results.results_path() == tmp_path / "results.json"
    assert [r.name for r in results.load(tmp_path)] == ["a"]


def test_zero_baseline_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no ratio"):
        results.record("a", 1.0, "msgs/s", "b", 0.0, directory=tmp_path)

    assert results.load(tmp_path) == []


def test_target_is_a_floor_for_rates(tmp_path: Path) -> None:
    met = results.record("fast", 30.0, "msgs/s", "base", 10.0, 2.0, directory=tmp_path)
    missed = results.record("slow", 15.0, "msgs/s", "base", 10.0, 2.0, directory=tmp_path)

    assert met.passed is True
    assert missed.passed is False
    assert results.missed_targets(results.load(tmp_path)) == [missed]


def test_target_is_a_ceiling_when_lower_is_better(tmp_path: Path) -> None:
    met = results.record(
        "cold_start", 3.0, "s", "load", 2.0, 2.0, higher_is_better=False, directory=tmp_path
    )
    missed = results.record(
        "cold_start", 5.0, "s", "load", 2.0, 2.0, higher_is_better=False, directory=tmp_path
    )

    assert met.passed is True
    assert missed.passed is False


def test_latest_returns_last_result_of_that_name(tmp_path: Path) -> None:
    results.record("a", 1.0, "s", directory=tmp_path)
    results.record("a", 2.0, "s", directory=tmp_path)

    latest = results.latest("a", tmp_path)

    assert latest is not None
    assert latest.value == 2.0
    assert results.latest("b", tmp_path) is None


def test_render_table_shows_figures_and_pass_markers(tmp_path: Path) -> None:
    results.record("broker.publish", 900.0, "msgs/s", directory=tmp_path)
    results.record(
        "broker.pipelined", 4500.0, "msgs/s", "broker.publish", 900.0, 2.0, directory=tmp_path
    )
    results.record(
        "broker.relay", 1350.0, "msgs/s", "broker.pipelined", 4500.0, 0.5, directory=tmp_path
    )

    text = _render(results.load(tmp_path))

    for header in ("benchmark", "value", "unit", "baseline", "ratio", "target", "pass"):
        assert header in text
    pipelined = next(line for line in text.splitlines() if "broker.pipelined " in line)
    assert "4,500" in pipelined
    assert "5.00" in pipelined
    assert ">= 2.00" in pipelined
    assert "PASS" in pipelined
    relay = next(line for line in text.splitlines() if "broker.relay" in line)
    assert "0.30" in relay
    assert "MISS" in relay
    publish = next(line for line in text.splitlines() if line.startswith("│ broker.publish"))
    assert "PASS" not in publish
    assert "MISS" not in publish


def test_render_table_defaults_to_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRELABEL_BENCH_DIR", str(tmp_path))
    results.record("only.one", 42.0, "msgs/s")

    console = Console(record=True, width=200, color_system=None)
    console.print(results.render_table())

    assert "only.one" in console.export_text()
