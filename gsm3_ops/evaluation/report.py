"""The evaluation report: a directory with ``report.md``, Table 1 (Markdown, CSV, JSON), per-site
metrics, the skipped list, the factor analysis and the figures.

:func:`write_report` renders any :class:`~gsm3_ops.evaluation.scores.Scores`; with
:func:`report_from_site_metrics` a benchmark that computed per-site metrics itself (such as
``benchmarks/conus_smap.py``) renders the same report.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gsm3_ops.config import BoxConfig
from gsm3_ops.evaluation import figures
from gsm3_ops.evaluation.factors import FactorResult, FactorsSkippedError, factor_analysis
from gsm3_ops.evaluation.scores import Scores, scores_from_metrics
from gsm3_ops.evaluation.tables import all_tables, to_markdown, write_tables
from gsm3_ops.grid import EaseGrid, GridError
from gsm3_ops.regions import region_of

log = logging.getLogger(__name__)

SKIPS_LISTED = 40  # skipped entries shown in report.md; all are in skipped.csv


@dataclass
class Report:
    """What a report directory holds."""

    path: Path
    tables: dict[str, Path]
    figures: dict[str, Path]
    factors: FactorResult | None
    skipped: pd.DataFrame
    files: list[Path] = field(default_factory=list)


def write_report(
    scores: Scores, out: Path, land: figures.LandMap | None = None, seed: int = 0
) -> Report:
    """Write the report directory ``out`` from ``scores``; figures or a factor analysis the
    scores cannot support are listed as skipped, never silently left out."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    units = str(scores.info.get("units", "m3 m-3"))
    tables = all_tables(scores)
    table_paths = write_tables(tables, out, units)
    figs: dict[str, Path] = {}
    main = scores.models[0]
    jobs = {
        "box_r": lambda p: figures.box_by_region(scores, "r", p),
        "box_rmse": lambda p: figures.box_by_region(scores, "rmse", p),
        "map_r": lambda p: figures.site_map(scores, "r", land, p),
        "map_rmse": lambda p: figures.site_map(scores, "rmse", land, p),
        "stratified_r": lambda p: figures.stratified_r(scores, main, p),
    }
    for name, job in jobs.items():
        if scores.valid(main).empty and name != "box_r":
            scores.add_skip("figure", name, f"{main} scored no site", main)
            continue
        try:
            figs[name] = job(out / f"{name}.png")
        except figures.FigureSkippedError as exc:
            scores.add_skip("figure", name, str(exc), main)
    factors = _factors(scores, main, out, seed, figs)
    site_csv = out / "site_metrics.csv"
    scores.sites.join(scores.metrics.set_index("site"), how="left").to_csv(
        site_csv, float_format="%.6g"
    )
    skipped_csv = out / "skipped.csv"
    scores.skipped.to_csv(skipped_csv, index=False)
    meta = out / "evaluation.json"
    meta.write_text(json.dumps(_meta(scores, tables, factors), indent=2, default=str) + "\n")
    md = out / "report.md"
    md.write_text(_markdown(scores, tables, figs, factors))
    files = [md, *table_paths.values(), site_csv, skipped_csv, meta, *figs.values()]
    if factors is not None:
        files += [out / "factors.json", out / "factors.csv"]
    return Report(out, table_paths, figs, factors, scores.skipped, files)


def report_from_site_metrics(
    out: Path,
    metrics: Mapping[str, Mapping[str, np.ndarray]],
    site_ids: Sequence[str],
    lon: np.ndarray,
    lat: np.ndarray,
    regions: Mapping[str, BoxConfig],
    attributes: pd.DataFrame | None = None,
    grid: EaseGrid | None = None,
    min_pairs: int = 30,
    info: Mapping[str, Any] | None = None,
) -> Report:
    """Render per-site metrics computed elsewhere as the standard report.

    Parameters
    ----------
    metrics
        Model name -> :func:`~gsm3_ops.evaluation.metrics.paired_metrics` output (``bias``,
        ``rmse``, ``ubrmse``, ``r``, ``n`` arrays, one value per site); the first is the model.
    site_ids, lon, lat
        The sites, in the order of the metric arrays (degrees).
    regions
        The evaluation regions (``Settings.regions``); a site outside all is ``Other``.
    attributes
        Optional per-site attributes (rows in site order), for the factor analysis and the
        stratified figure (``aspect_cos`` and ``smap_mean``).
    grid
        The grid whose land mask the maps draw under the sites (none: no background).
    """
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    sites = pd.DataFrame(
        {"lon": lon, "lat": lat, "region": region_of(lon, lat, regions)},
        index=pd.Index([str(s) for s in site_ids], name="site"),
    )
    names: list[str] = []
    if attributes is not None:
        if len(attributes) != len(sites):
            raise ValueError(f"attributes have {len(attributes)} rows for {len(sites)} sites")
        attrs = attributes.reset_index(drop=True).set_axis(sites.index)
        names = [c for c in attrs.columns if c not in sites.columns]
        sites = sites.join(attrs[names])
    meta = {"attributes": names, **(info or {})}
    scores = scores_from_metrics(metrics, sites, list(regions), min_pairs, meta)
    land = _land_around(grid, lon, lat) if grid is not None else None
    return write_report(scores, out, land)


def _land_around(grid: EaseGrid, lon: np.ndarray, lat: np.ndarray) -> figures.LandMap | None:
    """The land mask of the window around the sites, one degree beyond them."""
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        return None
    try:
        w = grid.window_from_bbox(
            max(lon[ok].min() - 1, -180),
            max(lat[ok].min() - 1, -90),
            min(lon[ok].max() + 1, 180),
            min(lat[ok].max() + 1, 90),
        )
    except GridError:
        return None
    return figures.land_map(grid, w)


def _factors(
    scores: Scores, model: str, out: Path, seed: int, figs: dict[str, Path]
) -> FactorResult | None:
    features = list(scores.info.get("attributes", []))
    try:
        result = factor_analysis(scores.valid(model), features, seed=seed)
    except FactorsSkippedError as exc:
        scores.add_skip("factors", "factor analysis", str(exc), model)
        return None
    (out / "factors.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    result.ranking.to_csv(out / "factors.csv", index=False, float_format="%.6g")
    figs["factors"] = figures.importance_bars(result.ranking, out / "factors.png")
    return result


def _meta(scores: Scores, tables: dict[str, pd.DataFrame], factors: FactorResult | None) -> dict:
    return {
        **scores.info,
        "models": scores.models,
        "regions": scores.regions,
        "n_sites": len(scores.sites),
        "n_skipped": len(scores.skipped),
        "table1": {m: t.replace({np.nan: None}).to_dict() for m, t in tables.items()},
        "factors": factors.to_dict() if factors else None,
    }


def _markdown(
    scores: Scores,
    tables: dict[str, pd.DataFrame],
    figs: dict[str, Path],
    factors: FactorResult | None,
) -> str:
    i = scores.info
    units = i.get("units", "m3 m-3")
    title = i.get("experiment", "evaluation")
    lines = [f"# Evaluation report: {title}", ""]
    facts = {
        "observation": i.get("against"),
        "period scored": " to ".join(i["period"]) if "period" in i else None,
        "models": ", ".join(scores.models),
        "references": ", ".join(f"{k} ({v})" for k, v in i.get("references", {}).items()),
        "sites evaluated": len(scores.sites),
        "minimum paired days": i.get("min_pairs"),
        "paired days": "common to every model and the observation"
        if i.get("same_days")
        else "each model's own (prediction and observation both present)",
        "training period": " to ".join(i["train_period"]) if "train_period" in i else None,
        "seed": i.get("seed"),
        "bundle": i.get("bundle"),
    }
    lines += [f"- **{k}**: {v}" for k, v in facts.items() if v not in (None, "")]
    for f in i.get("folds", []):
        lines.append(
            f"- fold **{f['fold']}**: trained {f['train'][0]} to {f['train'][1]} without "
            f"{f['held_out_cells']} cells, scored {f['scored_sites']} sites "
            f"(bundle {f['bundle_id']})"
        )
    lines += [
        "",
        "## Table 1: median metrics by region",
        "",
        f"Bias, RMSE and ubRMSE in {units}; Corr is Pearson R; Sites is how many sites "
        "were scored. Files: `table1.md`, `table1.csv`, `table1.json`.",
        "",
    ]
    for model, table in tables.items():
        lines += [f"### {model}", "", to_markdown(table), ""]
    if figs:
        lines += ["## Figures", ""]
        captions = {
            "box_r": "Pearson R per site, by region and model",
            "box_rmse": "RMSE per site, by region and model",
            "map_r": "Sites coloured by R over the land mask",
            "map_rmse": "Sites coloured by RMSE over the land mask",
            "stratified_r": "R stratified by aspect cosine and long-term mean soil moisture",
            "factors": "Factor analysis: importances",
        }
        for name, path in figs.items():
            lines += [f"### {captions.get(name, name)}", "", f"![{name}]({path.name})", ""]
    lines += ["## Factor analysis", ""]
    if factors is None:
        lines += ["Not run: see the skipped list.", ""]
    else:
        lines += [
            f"Random forest predicting per-site R of {scores.models[0]} from the site attributes; "
            f"{factors.n_train} training and {factors.n_test} test sites. Test correlation: "
            f"random forest {factors.rf_test_r:.3f}, gradient boosting {factors.gb_test_r:.3f}.",
            "",
            "| rank | attribute | RF permutation | RF impurity | GB permutation | GB impurity |",
            "|---|---|---|---|---|---|",
        ]
        for _, row in factors.ranking.iterrows():
            lines.append(
                f"| {row['rank']} | {row['feature']} | {row['rf_permutation']:.4f} | "
                f"{row['rf_impurity']:.4f} | {row['gb_permutation']:.4f} | "
                f"{row['gb_impurity']:.4f} |"
            )
        lines.append("")
    lines += _skipped_markdown(scores.skipped)
    return "\n".join(lines) + "\n"


def _skipped_markdown(skipped: pd.DataFrame) -> list[str]:
    lines = ["## Skipped", ""]
    if skipped.empty:
        return [*lines, "Nothing was skipped.", ""]
    counts = skipped.groupby(["kind", "model", "reason"], sort=False).size()
    counts = counts.reset_index(name="count")
    lines += [
        f"{len(skipped)} entries (all in `skipped.csv`):",
        "",
        "| kind | model | count | reason |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r.kind} | {r.model} | {r.count} | {r.reason} |" for r in counts.itertuples()]
    lines += ["", "| kind | name | model | reason |", "|---|---|---|---|"]
    for r in skipped.head(SKIPS_LISTED).itertuples():
        lines.append(f"| {r.kind} | {r.name} | {r.model} | {r.reason} |")
    if len(skipped) > SKIPS_LISTED:
        lines.append(f"| ... | {len(skipped) - SKIPS_LISTED} more | | |")
    return [*lines, ""]
