"""The results store every benchmark writes to, and the table that shows it.

A benchmark measures one figure and, where it has one, a baseline measured in
the same run (or a fixed reference), then calls :func:`record`. The store is a
JSON list in ``<bench dir>/results.json``; the bench dir is ``.bench/`` at the
repository root unless ``PRELABEL_BENCH_DIR`` or the ``directory`` argument
says otherwise.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, TypeAdapter
from rich.table import Table
from rich.text import Text

from bench.settings import BenchSettings

RESULTS_FILE = "results.json"


class BenchResult(BaseModel):
    """One measured figure, compared with its baseline."""

    model_config = ConfigDict(frozen=True)

    name: str
    """Dotted benchmark name, ``<module>.<what>``, e.g. ``broker.relay``."""
    value: float
    """The measured figure."""
    unit: str
    """Unit of ``value`` (and of ``baseline_value``), e.g. ``msgs/s``."""
    baseline: str | None = None
    """What the figure is compared with (often another benchmark's name)."""
    baseline_value: float | None = None
    """The baseline's figure, in the same unit."""
    ratio: float | None = None
    """``value / baseline_value``; ``None`` without a baseline."""
    target_ratio: float | None = None
    """The ratio the figure should reach; ``None`` when informational only."""
    higher_is_better: bool = True
    """Whether the target is a floor (rates) or a ceiling (latencies)."""

    @property
    def passed(self) -> bool | None:
        """Whether the ratio meets the target; ``None`` when there is no target."""
        if self.target_ratio is None or self.ratio is None:
            return None
        if self.higher_is_better:
            return self.ratio >= self.target_ratio
        return self.ratio <= self.target_ratio


_RESULTS_ADAPTER = TypeAdapter(list[BenchResult])


def results_path(directory: Path | str | None = None) -> Path:
    """The results file in ``directory``, or in the configured bench dir."""
    base = Path(directory) if directory is not None else BenchSettings().bench_dir
    return base / RESULTS_FILE


def load(directory: Path | str | None = None) -> list[BenchResult]:
    """All results recorded since the last :func:`reset` (empty when none)."""
    path = results_path(directory)
    if not path.exists():
        return []
    return _RESULTS_ADAPTER.validate_json(path.read_bytes())


def reset(directory: Path | str | None = None) -> None:
    """Forget every recorded result (the file holds an empty list)."""
    _write(results_path(directory), [])


def record(
    name: str,
    value: float,
    unit: str,
    baseline: str | None = None,
    baseline_value: float | None = None,
    target_ratio: float | None = None,
    *,
    higher_is_better: bool = True,
    directory: Path | str | None = None,
) -> BenchResult:
    """Compute the ratio to the baseline, append the result and return it.

    Raises ``ValueError`` when ``baseline_value`` is zero: a ratio to nothing
    means the baseline measurement itself is broken, which should be loud.
    """
    ratio: float | None = None
    if baseline_value is not None:
        if baseline_value == 0:
            raise ValueError(f"{name}: baseline {baseline!r} measured 0 {unit}; no ratio")
        ratio = value / baseline_value
    result = BenchResult(
        name=name,
        value=value,
        unit=unit,
        baseline=baseline,
        baseline_value=baseline_value,
        ratio=ratio,
        target_ratio=target_ratio,
        higher_is_better=higher_is_better,
    )
    path = results_path(directory)
    _write(path, [*load(directory), result])
    return result


def latest(name: str, directory: Path | str | None = None) -> BenchResult | None:
    """The last result recorded under ``name``, for use as another's baseline."""
    for result in reversed(load(directory)):
        if result.name == name:
            return result
    return None


def missed_targets(results: list[BenchResult]) -> list[BenchResult]:
    """The results that have a target and do not meet it."""
    return [result for result in results if result.passed is False]


def render_table(results: list[BenchResult] | None = None) -> Table:
    """A rich table of ``results`` (default: everything in the store)."""
    rows = load() if results is None else results
    table = Table(title="prelabel benchmarks")
    # The figures keep their width; in a narrow terminal the two names fold
    # instead, so every figure stays readable.
    table.add_column("benchmark", overflow="fold")
    table.add_column("value", justify="right", min_width=7, no_wrap=True)
    table.add_column("unit", min_width=6, no_wrap=True)
    table.add_column("baseline", overflow="fold")
    table.add_column("baseline value", justify="right", min_width=8)
    table.add_column("ratio", justify="right", min_width=5, no_wrap=True)
    table.add_column("target", justify="right", min_width=7, no_wrap=True)
    table.add_column("pass", min_width=4, no_wrap=True)
    for result in rows:
        target = ""
        if result.target_ratio is not None:
            sign = ">=" if result.higher_is_better else "<="
            target = f"{sign} {result.target_ratio:.2f}"
        table.add_row(
            result.name,
            _number(result.value),
            result.unit,
            result.baseline or "",
            "" if result.baseline_value is None else _number(result.baseline_value),
            "" if result.ratio is None else f"{result.ratio:.2f}",
            target,
            _marker(result.passed),
        )
    return table


def _marker(passed: bool | None) -> Text:
    if passed is None:
        return Text("")
    return Text("PASS", style="green") if passed else Text("MISS", style="bold red")


def _number(value: float) -> str:
    # Rates span 1 to 100k: whole numbers above 100 read better, decimals below.
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _write(path: Path, results: list[BenchResult]) -> None:
    # Write-then-rename so a crash mid-write never leaves a truncated store.
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps([result.model_dump(mode="json") for result in results], indent=2)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=".results-", suffix=".tmp", delete=False
    ) as handle:
        handle.write(payload + "\n")
    os.replace(handle.name, path)
