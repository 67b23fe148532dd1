"""Tables in the layout of the GSM3 paper's Table 1: metrics by region, medians over sites.

Rows are Bias, RMSE, ubRMSE and Corr (plus the number of sites scored); columns are the
regions that hold evaluated sites, in configured order, then Global (all sites).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gsm3_ops.evaluation.scores import Scores

GLOBAL = "Global"
ROWS = {"Bias": "bias", "RMSE": "rmse", "ubRMSE": "ubrmse", "Corr": "r"}
SITES_ROW = "Sites"


def table1(scores: Scores, model: str) -> pd.DataFrame:
    """Medians of each metric per region and globally for ``model`` (NaN: no site scored)."""
    valid = scores.valid(model)
    columns = [*scores.region_columns(), GLOBAL]
    out = pd.DataFrame(index=[*ROWS, SITES_ROW], columns=columns, dtype=float)
    for col in columns:
        part = valid if col == GLOBAL else valid[valid["region"] == col]
        for row, key in ROWS.items():
            out.loc[row, col] = float(np.median(part[key])) if len(part) else np.nan
        out.loc[SITES_ROW, col] = len(part)
    out.index.name = "metric"
    return out


def all_tables(scores: Scores) -> dict[str, pd.DataFrame]:
    """Table 1 of every model, in display order."""
    return {model: table1(scores, model) for model in scores.models}


def to_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table (no optional dependency)."""
    head = ["", *table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, values in table.iterrows():
        cells = [_fmt(v, digits, integer=row == SITES_ROW) for v in values]
        lines.append("| " + " | ".join([str(row), *cells]) + " |")
    return "\n".join(lines)


def write_tables(tables: dict[str, pd.DataFrame], out: Path, units: str) -> dict[str, Path]:
    """Write ``table1.md``, ``table1.csv`` (one block per model) and ``table1.json``."""
    out.mkdir(parents=True, exist_ok=True)
    md = []
    for model, table in tables.items():
        md += [f"### {model}", "", to_markdown(table), ""]
    paths = {"md": out / "table1.md", "csv": out / "table1.csv", "json": out / "table1.json"}
    note = f"Medians over sites; Bias, RMSE and ubRMSE in {units}, Corr is Pearson R."
    paths["md"].write_text("\n".join([note, "", *md]))
    long = pd.concat(
        [t.reset_index().assign(model=m) for m, t in tables.items()], ignore_index=True
    )
    long = long[["model", "metric", *[c for c in long.columns if c not in ("model", "metric")]]]
    long.to_csv(paths["csv"], index=False, float_format="%.6g")
    doc: dict[str, Any] = {"units": units, "statistic": "median over sites", "models": {}}
    for model, table in tables.items():
        doc["models"][model] = {
            row: {col: _json_value(v) for col, v in table.loc[row].items()} for row in table.index
        }
    paths["json"].write_text(json.dumps(doc, indent=2) + "\n")
    return paths


def _fmt(value: float, digits: int, integer: bool) -> str:
    if not np.isfinite(value):
        return "-"
    return f"{int(value)}" if integer else f"{value:.{digits}f}"


def _json_value(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
