// The legend of a layer from the service's /legend/{layer}: a colour bar with its range and
// units for the continuous layers, a list of swatches for the categorical quality flag.

import { formatKey, formatNumber, formatUnits } from "./format.js";

function element(tag, attrs = {}, text = "") {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
  if (text) el.textContent = text;
  return el;
}

// A stop or class as {value, color, label}: from {value, color, label} or [value, colour, label].
function entry(item) {
  const [value, color, label] = Array.isArray(item)
    ? item
    : [item.value, item.color ?? item.colour, item.label ?? item.meaning ?? item.name];
  return { value, color, label: label === undefined || label === null ? String(value) : formatKey(label) };
}

// The classes of a categorical legend (the quality flag), or null for a continuous one.
function categories(legend) {
  const list = legend.classes ?? legend.categories ?? legend.entries;
  if (Array.isArray(list)) return list.map(entry);
  if (legend.type === "categorical" && Array.isArray(legend.stops)) return legend.stops.map(entry);
  return null;
}

function colourBar(legend) {
  const { min, max } = legend;
  const stops = legend.stops.map(entry).map(({ value, color }) => [value, color]);
  const span = max - min || 1;
  const gradient = stops
    .map(([value, color]) => `${color} ${(((value - min) / span) * 100).toFixed(1)}%`)
    .join(", ");
  const bar = element("div", {
    class: "legend-bar",
    role: "img",
    "aria-label": `colour scale from ${formatNumber(min)} to ${formatNumber(max)}`,
  });
  bar.style.background = `linear-gradient(to right, ${gradient})`;
  const ticks = element("div", { class: "legend-ticks", "aria-hidden": "true" });
  for (const value of [min, (min + max) / 2, max]) ticks.append(element("span", {}, formatNumber(value)));
  return [bar, ticks];
}

function swatches(entries) {
  const list = element("ul", { class: "legend-swatches" });
  for (const { value, color, label } of entries) {
    const item = element("li");
    const swatch = element("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.background = color;
    item.append(swatch, element("span", {}, label === String(value) ? label : `${value}: ${label}`));
    list.append(item);
  }
  return [list];
}

export function renderLegend(container, legend, title) {
  const units = formatUnits(legend.units);
  const heading = element("p", { class: "legend-title" }, units ? `${title} (${units})` : title);
  const entries = categories(legend);
  const parts = entries ? swatches(entries) : colourBar(legend);
  if (legend.rule) parts.push(element("p", { class: "legend-note" }, legend.rule));
  container.replaceChildren(heading, ...parts);
}
