"""The report's figures (PNG): box plots per region and model, site maps over the land mask,
and R stratified by aspect and long-term mean soil moisture (the GSM3 paper's Figure 6).

Every function returns the path written, or raises :class:`FigureSkippedError` with the reason
when the scores cannot support the figure (the report lists it as skipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from gsm3_ops.evaluation.scores import Scores
from gsm3_ops.evaluation.tables import GLOBAL
from gsm3_ops.grid import EaseGrid, Window

DPI = 130
MAX_MAP_CELLS = 700  # land-mask pixels along the longer side of a map (coarser: strided)
LABELS = {
    "r": ("Pearson R", "-"),
    "rmse": ("RMSE", "m³/m³"),
    "ubrmse": ("ubRMSE", "m³/m³"),
    "bias": ("Bias", "m³/m³"),
}
ASPECT_BINS = np.array([-1.0, -0.6, -0.2, 0.2, 0.6, 1.0])
_LAND, _SEA = "#e4e4e4", "#cfe3f3"
_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


class FigureSkippedError(ValueError):
    """A figure the scores cannot support (no attribute, too few sites)."""


@dataclass(frozen=True)
class LandMap:
    """A land mask with 2-D cell-centre longitudes and latitudes (the maps' background)."""

    lon: np.ndarray
    lat: np.ndarray
    land: np.ndarray


def land_map(grid: EaseGrid, window: Window) -> LandMap:
    """The window's land mask, strided to at most ``MAX_MAP_CELLS`` pixels a side."""
    step = max(1, int(np.ceil(max(window.shape) / MAX_MAP_CELLS)))
    land = grid.land_mask(window)[::step, ::step]
    lon, lat = grid.lonlat(window)
    return LandMap(lon[::step, ::step], lat[::step, ::step], land)


def _label(metric: str) -> str:
    name, units = LABELS[metric]
    return f"{name} ({units})"


def box_by_region(scores: Scores, metric: str, path: Path) -> Path:
    """Box plots of a per-site metric for each region and Global, one box per model."""
    columns = [*scores.region_columns(), GLOBAL]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(columns) * max(1, len(scores.models))), 4.5))
    width = 0.8 / len(scores.models)
    handles = []
    for m, model in enumerate(scores.models):
        valid = scores.valid(model)
        data = [
            (valid if col == GLOBAL else valid[valid["region"] == col])[metric].to_numpy(float)
            for col in columns
        ]
        pos = np.arange(len(columns)) + (m - (len(scores.models) - 1) / 2) * width
        keep = [i for i, d in enumerate(data) if d.size]
        color = _COLORS[m % len(_COLORS)]
        if keep:
            ax.boxplot(
                [data[i] for i in keep],
                positions=pos[keep],
                widths=width * 0.85,
                patch_artist=True,
                boxprops={"facecolor": color, "alpha": 0.6},
                medianprops={"color": "black"},
                flierprops={"markersize": 3},
            )
        handles.append(plt.Rectangle((0, 0), 1, 1, facecolor=color, alpha=0.6, label=model))
    counts = [
        int((scores.sites["region"] == c).sum()) if c != GLOBAL else len(scores.sites)
        for c in columns
    ]
    ax.set_xticks(
        np.arange(len(columns)), [f"{c}\n(n={n})" for c, n in zip(columns, counts, strict=True)]
    )
    ax.set_xlim(-0.6, len(columns) - 0.4)
    ax.set_ylabel(_label(metric))
    ax.set_xlabel("Region (number of sites evaluated)")
    ax.set_title(f"{LABELS[metric][0]} per site by region, against {_against(scores)}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=handles, title="Model", loc="best", fontsize=8)
    return _save(fig, path)


def site_map(scores: Scores, metric: str, land: LandMap | None, path: Path) -> Path:
    """Sites coloured by a metric over the land mask, one panel per model."""
    lon_all, lat_all = scores.sites["lon"].to_numpy(float), scores.sites["lat"].to_numpy(float)
    span = max(np.ptp(lon_all), np.ptp(lat_all), 1.0)
    pad = 0.05 * span
    x0, x1 = lon_all.min() - pad, lon_all.max() + pad
    y0, y1 = lat_all.min() - pad, lat_all.max() + pad
    if land is not None:  # the land mask's window already frames the sites
        x0, x1 = min(lon_all.min(), np.nanmin(land.lon)), max(lon_all.max(), np.nanmax(land.lon))
        y0, y1 = min(lat_all.min(), np.nanmin(land.lat)), max(lat_all.max(), np.nanmax(land.lat))
    n = len(scores.models)
    height = max(3.8, min(9.0, 4.6 * (y1 - y0) / max(x1 - x0, 1e-6) + 1.6))
    fig, axes = plt.subplots(
        1, n, figsize=(5.4 * n + 1.2, height), squeeze=False, layout="constrained", sharey=True
    )
    pooled = np.concatenate([scores.valid(m)[metric].to_numpy(float) for m in scores.models])
    if metric == "r":  # from a round value just below the lowest few R, for contrast
        low = np.floor(np.percentile(pooled, 2) * 10) / 10 if pooled.size else 0.0
        vmin, vmax, cmap = float(np.clip(low, -1.0, 0.9)), 1.0, "viridis"
    else:
        vmin, vmax = 0.0, float(np.percentile(pooled, 95)) if pooled.size else 0.1
        cmap = "magma_r"
    marker, edge, shape = _marker(lon_all, lat_all, x1 - x0, 5.4 * 72)
    background = ListedColormap([_SEA, _LAND])
    sc = None
    for k, (ax, model) in enumerate(zip(axes[0], scores.models, strict=True)):
        if land is not None:
            ax.pcolormesh(
                land.lon,
                land.lat,
                land.land.astype(float),
                shading="nearest",
                cmap=background,
                vmin=0,
                vmax=1,
                rasterized=True,
            )
        v = scores.of(model)
        ok = np.isfinite(v[metric].to_numpy(float))
        ax.scatter(
            v["lon"][~ok],
            v["lat"][~ok],
            s=marker,
            marker=shape,
            facecolors="none",
            edgecolors="grey",
            linewidths=0.6,
        )
        sc = ax.scatter(
            v["lon"][ok],
            v["lat"][ok],
            c=v[metric][ok],
            s=marker,
            marker=shape,
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            edgecolors="black",
            linewidths=edge,
        )
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal" if span < 60 else "auto")
        ax.set_xlabel("Longitude (°E)")
        if k == 0:
            ax.set_ylabel("Latitude (°N)")
        ax.set_title(f"{model}: {int(ok.sum())} sites scored, {int((~ok).sum())} not")
    if sc is not None:
        fig.colorbar(sc, ax=axes[0].tolist(), shrink=0.85, label=_label(metric))
    handles = [
        plt.Rectangle((0, 0), 1, 1, facecolor=_LAND, edgecolor="grey", label="land"),
        plt.Rectangle((0, 0), 1, 1, facecolor=_SEA, edgecolor="grey", label="sea"),
        plt.Line2D([], [], marker="o", ls="", mfc="none", mec="grey", label="not scored"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8)
    fig.suptitle(f"{LABELS[metric][0]} per site against {_against(scores)}")
    return _save(fig, path, tight=False)


def _marker(lon: np.ndarray, lat: np.ndarray, span_deg: float, panel_pt: float):
    """Marker area (pt²), edge width and shape: dense sites (grid cells) become rectangles
    one cell wide and tall without edges, so their colour fills the map; sparse stations are
    ringed dots."""
    if lon.size < 150:
        return 36.0, 0.4, "o"
    dx, dy = (np.diff(np.unique(np.round(v, 4))) for v in (lon, lat))
    dx = float(np.median(dx)) if dx.size else span_deg
    dy = float(np.median(dy)) if dy.size else dx
    big = max(dx, dy)  # a marker's size is its larger side
    shape = [(-dx / big, -dy / big), (dx / big, -dy / big), (dx / big, dy / big),
             (-dx / big, dy / big)]  # fmt: skip
    width = panel_pt * big / max(span_deg, 1e-9)  # equal aspect: one scale for both axes
    return float(np.clip(width, 2.0, 16.0) ** 2), 0.0, shape


def stratified_r(scores: Scores, model: str, path: Path) -> Path:
    """R stratified by aspect-cosine bins and long-term mean soil moisture terciles
    (box plots), and the median R of each combination (heat map with site counts)."""
    v = scores.valid(model)
    for need in ("aspect_cos", "smap_mean"):
        if need not in v.columns or not np.isfinite(v[need].to_numpy(float)).any():
            raise FigureSkippedError(f"the sites have no {need!r} attribute")
    v = v[np.isfinite(v["aspect_cos"]) & np.isfinite(v["smap_mean"])]
    if len(v) < 6:
        raise FigureSkippedError(f"only {len(v)} sites with R, aspect and mean soil moisture (< 6)")
    a_bin = np.clip(np.digitize(v["aspect_cos"], ASPECT_BINS[1:-1]), 0, len(ASPECT_BINS) - 2)
    edges = np.unique(np.nanpercentile(v["smap_mean"], [0, 100 / 3, 200 / 3, 100]))
    if edges.size < 2:
        raise FigureSkippedError("every site has the same long-term mean soil moisture")
    m_bin = np.clip(np.digitize(v["smap_mean"], edges[1:-1]), 0, edges.size - 2)
    names = [f"{edges[i]:.2f}-{edges[i + 1]:.2f}" for i in range(edges.size - 1)]
    a_names = [f"{ASPECT_BINS[i]:+.1f}..{ASPECT_BINS[i + 1]:+.1f}" for i in range(5)]
    r = v["r"].to_numpy(float)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), width_ratios=[1.4, 1])
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        pos, data = [], []
        for a in range(5):
            sel = r[(a_bin == a) & (m_bin == k)]
            if sel.size:
                pos.append(a + (k - (len(names) - 1) / 2) * width)
                data.append(sel)
        if data:
            ax1.boxplot(
                data,
                positions=pos,
                widths=width * 0.85,
                patch_artist=True,
                boxprops={"facecolor": _COLORS[k], "alpha": 0.6},
                medianprops={"color": "black"},
                flierprops={"markersize": 3},
            )
        ax1.add_patch(
            plt.Rectangle((0, 0), 0, 0, facecolor=_COLORS[k], alpha=0.6, label=f"{name} m³/m³")
        )
    ax1.set_xticks(range(5), a_names)
    ax1.set_xlim(-0.6, 4.6)
    ax1.set_xlabel("Aspect cosine (-): -1 equator-facing, +1 pole-facing")
    ax1.set_ylabel(_label("r"))
    ax1.set_title("R by aspect and long-term mean soil moisture")
    ax1.legend(
        title="Long-term mean soil moisture",
        fontsize=8,
        ncol=3,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
    )
    ax1.grid(axis="y", alpha=0.3)
    grid = np.full((len(names), 5), np.nan)
    count = np.zeros((len(names), 5), dtype=int)
    for k in range(len(names)):
        for a in range(5):
            sel = r[(a_bin == a) & (m_bin == k)]
            count[k, a] = sel.size
            grid[k, a] = np.median(sel) if sel.size else np.nan
    im = ax2.imshow(
        grid,
        origin="lower",
        cmap="viridis",
        aspect="auto",
        vmin=min(0.0, np.nanmin(grid)),
        vmax=1.0,
    )
    for k in range(len(names)):
        for a in range(5):
            if count[k, a]:
                ax2.text(
                    a,
                    k,
                    f"{grid[k, a]:.2f}\nn={count[k, a]}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if grid[k, a] < 0.6 else "black",
                )
    ax2.set_xticks(range(5), a_names, fontsize=8)
    ax2.set_yticks(range(len(names)), names)
    ax2.set_xlabel("Aspect cosine bin (-)")
    ax2.set_ylabel("Long-term mean soil moisture (m³/m³)")
    ax2.set_title("Median R per class (n sites)")
    fig.colorbar(im, ax=ax2, label="Median Pearson R (-)")
    fig.suptitle(f"{model}: R stratified by aspect and wetness ({len(v)} sites)")
    return _save(fig, path)


def importance_bars(ranking, path: Path, top: int = 15) -> Path:
    """Horizontal bars of the random forest's permutation and impurity importances."""
    head = ranking.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7.5, max(3.0, 0.32 * len(head) + 1.2)))
    y = np.arange(len(head))
    ax.barh(
        y - 0.2,
        head["rf_permutation"],
        0.4,
        xerr=head["rf_permutation_sd"],
        label="permutation (drop in test R²)",
        color=_COLORS[0],
    )
    ax.barh(y + 0.2, head["rf_impurity"], 0.4, label="impurity (share)", color=_COLORS[1])
    ax.set_yticks(y, head["feature"])
    ax.set_xlabel("Importance (-)")
    ax.set_ylabel("Site attribute")
    ax.set_title("Random forest: what explains per-site R")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def _against(scores: Scores) -> str:
    return {"insitu": "in-situ", "smap": "SMAP", "truth": "the synthetic truth"}.get(
        str(scores.info.get("against", "")), str(scores.info.get("against", "observations"))
    )


def _save(fig, path: Path, tight: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path
