// A small SVG time-series chart: the daily values as a line with a dot per day, the ensemble
// spread as a band around it, the selected day as a vertical rule.

import { formatNumber } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 340;
const HEIGHT = 170;
const PAD = { left: 42, right: 10, top: 10, bottom: 24 };
const DAY_MS = 86400000;

function svg(tag, attrs = {}, text = "") {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
  if (text) el.textContent = text;
  return el;
}

const dayNumber = (iso) => Date.parse(`${iso}T00:00:00Z`) / DAY_MS;

// Scales from the dates and the values (with their spread) to the plot area.
function scales(points, lastDay) {
  const first = dayNumber(points[0].date);
  const spanX = Math.max(dayNumber(lastDay) - first, 1);
  const lows = points.map((p) => p.value - (p.spread ?? 0));
  const highs = points.map((p) => p.value + (p.spread ?? 0));
  let [lo, hi] = [Math.min(...lows), Math.max(...highs)];
  const margin = (hi - lo) * 0.1 || Math.abs(hi) * 0.1 || 0.01;
  [lo, hi] = [lo - margin, hi + margin];
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  return {
    x: (iso) => PAD.left + ((dayNumber(iso) - first) / spanX) * plotW,
    y: (v) => PAD.top + (1 - (v - lo) / (hi - lo)) * plotH,
    lo,
    hi,
  };
}

// Runs of consecutive days: a missing day starts a new run.
function runs(points) {
  const out = [];
  for (const [i, p] of points.entries()) {
    if (i === 0 || dayNumber(p.date) - dayNumber(points[i - 1].date) > 1) out.push([]);
    out[out.length - 1].push(p);
  }
  return out;
}

// "M x y L x y ..." through the points, a new "M" after a missing day.
function linePath(points, s) {
  const xy = (p) => `${s.x(p.date).toFixed(1)} ${s.y(p.value).toFixed(1)}`;
  return runs(points)
    .map((run) => `M${run.map(xy).join(" L")}`)
    .join(" ");
}

// The spread band of one run of days.
function bandPath(points, s) {
  const upper = points.map((p) => `${s.x(p.date).toFixed(1)} ${s.y(p.value + p.spread).toFixed(1)}`);
  const lower = points.map((p) => `${s.x(p.date).toFixed(1)} ${s.y(p.value - p.spread).toFixed(1)}`);
  return `M${upper.join(" L")} L${lower.reverse().join(" L")} Z`;
}

/**
 * Draw `series` (the /timeseries entries) into `container`.
 * key: the entry's value to draw; spreadKey: its ± spread (optional); selected: the day marked.
 * Returns the number of days drawn.
 */
export function drawChart(container, series, { key, spreadKey, selected, title, units }) {
  const points = series
    .filter((e) => typeof e[key] === "number" && Number.isFinite(e[key]))
    .map((e) => ({ date: e.date, value: e[key], spread: Number.isFinite(e[spreadKey]) ? e[spreadKey] : null }));
  if (points.length === 0) {
    container.replaceChildren();
    return 0;
  }
  const lastDay = series[series.length - 1].date;
  const s = scales(points, lastDay);
  const values = points.map((p) => p.value);
  const summary = `${title} from ${points[0].date} to ${points[points.length - 1].date}: ${points.length} days, `
    + `${formatNumber(Math.min(...values))} to ${formatNumber(Math.max(...values))} ${units}`;
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": summary });
  root.append(svg("title", {}, summary));

  const bottom = HEIGHT - PAD.bottom;
  root.append(svg("line", { class: "axis", x1: PAD.left, x2: WIDTH - PAD.right, y1: bottom, y2: bottom }));
  root.append(svg("line", { class: "axis", x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: bottom }));
  for (const v of [s.lo, (s.lo + s.hi) / 2, s.hi]) {
    root.append(svg("text", { class: "tick", x: PAD.left - 4, y: s.y(v) + 3, "text-anchor": "end" }, formatNumber(v)));
  }
  const firstDay = series[0].date;
  root.append(svg("text", { class: "tick", x: PAD.left, y: HEIGHT - 6 }, firstDay));
  root.append(svg("text", { class: "tick", x: WIDTH - PAD.right, y: HEIGHT - 6, "text-anchor": "end" }, lastDay));

  if (points.every((p) => p.spread !== null)) {
    const bands = runs(points).filter((run) => run.length > 1);
    for (const run of bands) root.append(svg("path", { class: "band", d: bandPath(run, s) }));
  }
  if (selected && dayNumber(selected) >= dayNumber(firstDay) && dayNumber(selected) <= dayNumber(lastDay)) {
    const x = s.x(selected);
    root.append(svg("line", { class: "selected-day", x1: x, x2: x, y1: PAD.top, y2: bottom }));
  }
  root.append(svg("path", { class: "line", d: linePath(points, s), "data-days": points.length }));
  for (const p of points) {
    const dot = svg("circle", { class: "dot", cx: s.x(p.date), cy: s.y(p.value), r: 2.5 });
    dot.append(svg("title", {}, `${p.date}: ${formatNumber(p.value)} ${units}`));
    root.append(dot);
  }
  container.replaceChildren(root);
  return points.length;
}
