// The web map: the product's tiles for a layer and a day over bundled coastlines and borders,
// a date slider, a layer switch, the legend, and a click for a cell's time series.
// Everything comes from this service (relative URLs) or from vendor/: nothing from the internet.

import { AttributionControl, Map, Marker, NavigationControl, ScaleControl } from "./vendor/maplibre-gl.mjs";
import { drawChart } from "./chart.js";
import { formatKey, formatNumber, formatUnits, LABELS } from "./format.js";
import { renderLegend } from "./legend.js";

// The service's root: the page is its "/" (also behind a reverse proxy's path prefix).
const BASE = new URL(".", document.baseURI).href;
const vendor = (name) => new URL(`vendor/${name}`, import.meta.url).href;
const $ = (id) => document.getElementById(id);

const state = { layers: [], days: [], dayIndex: 0, layer: "soil_moisture", point: null, series: null };
const legends = {};
let request = 0; // the latest point request; older answers are dropped

async function getJson(path) {
  const response = await fetch(new URL(path, BASE));
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function status(text) {
  $("status").textContent = text;
}

const day = () => state.days[state.dayIndex];
const tileUrl = () => `${BASE}tiles/${state.layer}/${day()}/{z}/{x}/{y}.png`;
const layerInfo = (name) => state.layers.find((l) => l.name === name) ?? { name, units: "" };

// [west, south, east, north] of the data: /latest's bbox, else the STAC collection's.
async function dataExtent(latest) {
  if (Array.isArray(latest.bbox) && latest.bbox.length === 4) return latest.bbox;
  try {
    const collection = await getJson("stac/collection.json");
    const bbox = collection.extent?.spatial?.bbox?.[0];
    if (Array.isArray(bbox) && bbox.length === 4) return bbox;
  } catch (error) {
    console.warn("no STAC collection for the extent", error);
  }
  return null;
}

function style(bbox) {
  const product = { type: "raster", tiles: [tileUrl()], tileSize: 256, maxzoom: 11 }; // 9 km cells: overzoom above
  if (bbox) product.bounds = bbox;
  return {
    version: 8,
    sources: {
      product,
      coastlines: { type: "geojson", data: vendor("coastlines.geojson") },
      borders: { type: "geojson", data: vendor("borders.geojson") },
    },
    layers: [
      { id: "background", type: "background", paint: { "background-color": "#e4e9ee" } },
      {
        id: "product",
        type: "raster",
        source: "product",
        paint: { "raster-resampling": "nearest", "raster-fade-duration": 0 },
      },
      {
        id: "borders",
        type: "line",
        source: "borders",
        paint: { "line-color": "#4a5560", "line-width": 0.8, "line-dasharray": [3, 2] },
      },
      {
        id: "coastlines",
        type: "line",
        source: "coastlines",
        paint: { "line-color": "#1f2b35", "line-width": 1.1 },
      },
    ],
  };
}

function createMap(bbox) {
  const map = new Map({
    container: "map",
    style: style(bbox),
    bounds: bbox ?? [-180, -60, 180, 75],
    fitBoundsOptions: { padding: 16 },
    maxZoom: 12,
    dragRotate: false,
    pitchWithRotate: false,
    attributionControl: false,
  });
  map.touchZoomRotate.disableRotation();
  map.addControl(new NavigationControl({ showCompass: false }), "top-right");
  map.addControl(new ScaleControl(), "bottom-left");
  const attribution = "GSM3 soil moisture · coastlines and borders: Natural Earth · MapLibre GL JS";
  map.addControl(new AttributionControl({ compact: true, customAttribution: attribution }));
  return map;
}

async function showLegend() {
  const layer = state.layer;
  legends[layer] ??= await getJson(`legend/${layer}`);
  if (layer === state.layer) renderLegend($("legend-body"), legends[layer], LABELS[layer] ?? layer);
}

// A value with its units: from the answer's own `units`, else the layer's.
function describeValue(key, value, units) {
  const symbol = formatUnits(units?.[key] ?? layerInfo(key).units);
  if (Array.isArray(value)) return value.map(formatKey).join(", ") || "none";
  if (value && typeof value === "object") {
    return Object.entries(value).map(([k, v]) => `${k}: ${v}`).join(", ") || "none";
  }
  return typeof value === "number" && symbol ? `${formatNumber(value)} ${symbol}` : formatNumber(value);
}

const HIDDEN = new Set(["lon", "lat", "cell", "units"]);

// The /point answer as term/definition pairs: the values, quality, provenance (one level).
function showPointValues(point) {
  const list = $("point-values");
  list.replaceChildren();
  const add = (term, text) => {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = term;
    dd.textContent = text;
    list.append(dt, dd);
  };
  for (const [key, value] of Object.entries(point)) {
    if (HIDDEN.has(key)) continue;
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [inner, v] of Object.entries(value)) {
        if (v === null) continue; // a provenance the manifest does not state
        add(`${formatKey(key)}: ${formatKey(inner).toLowerCase()}`, describeValue(inner, v, point.units));
      }
    } else {
      add(formatKey(key), describeValue(key, value, point.units));
    }
  }
}

function showChart() {
  const info = layerInfo("soil_moisture");
  const drawn = drawChart($("chart"), state.series.series, {
    key: "soil_moisture",
    spreadKey: "soil_moisture_sd",
    selected: day(),
    title: LABELS.soil_moisture,
    units: formatUnits(info.units),
  });
  const { lon, lat } = state.point;
  $("point-hint").textContent = drawn
    ? `Soil moisture at ${lat.toFixed(3)}°, ${lon.toFixed(3)}° (${drawn} days).`
    : `No soil moisture at ${lat.toFixed(3)}°, ${lon.toFixed(3)}°.`;
}

async function showPoint() {
  const { lon, lat } = state.point;
  const mine = ++request;
  try {
    const point = await getJson(`point?lon=${lon}&lat=${lat}&date=${day()}`);
    if (mine === request) showPointValues(point);
  } catch (error) {
    if (mine === request) $("point-values").replaceChildren();
    console.warn(error);
  }
}

async function selectPoint(map, marker, lon, lat) {
  state.point = { lon, lat };
  marker.setLngLat([lon, lat]).addTo(map);
  const mine = ++request;
  status("Loading the time series…");
  const [start, end] = [state.days[0], state.days[state.days.length - 1]];
  try {
    const series = await getJson(`timeseries?lon=${lon}&lat=${lat}&start=${start}&end=${end}&format=json`);
    if (mine !== request) return;
    state.series = series;
    showChart();
    status("");
  } catch (error) {
    if (mine !== request) return;
    state.series = null;
    $("chart").replaceChildren();
    $("point-hint").textContent = `No product at ${lat.toFixed(3)}°, ${lon.toFixed(3)}°.`;
    status("");
    console.warn(error);
  }
  await showPoint();
}

function setupLayers() {
  const select = $("layer");
  const names = new Set(state.layers.map((l) => l.name));
  for (const option of [...select.options]) {
    if (!names.has(option.value)) option.remove();
  }
  for (const { name, long_name: longName } of state.layers) {
    if (![...select.options].some((o) => o.value === name)) select.add(new Option(LABELS[name] ?? longName, name));
  }
  select.value = state.layer;
}

function wire(map, marker) {
  const source = () => map.getSource("product");
  const slider = $("day");
  let timer = null;
  const showDay = () => {
    clearTimeout(timer);
    source().setTiles([tileUrl()]);
    if (state.series) showChart();
    if (state.point) showPoint();
  };
  slider.addEventListener("input", () => {
    state.dayIndex = Number(slider.value);
    $("day-value").textContent = day();
    clearTimeout(timer);
    timer = setTimeout(showDay, 150); // while dragging, not a tile request per step
  });
  slider.addEventListener("change", showDay);
  $("layer").addEventListener("change", (event) => {
    state.layer = event.target.value;
    source().setTiles([tileUrl()]);
    showLegend().catch((error) => status(`No legend: ${error.message}`));
  });
  $("controls").addEventListener("submit", (event) => event.preventDefault());
  map.on("click", (event) => selectPoint(map, marker, event.lngLat.lng, event.lngLat.lat));
  // Keyboard: Enter on the focused map selects the point at its centre.
  map.getCanvas().addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    const { lng, lat } = map.getCenter();
    selectPoint(map, marker, lng, lat);
  });
  map.on("error", (event) => console.warn("map:", event.error?.message ?? event));
}

async function main() {
  const [layers, { days }, latest] = await Promise.all([getJson("layers"), getJson("days"), getJson("latest")]);
  if (days.length === 0) {
    status("No day has been published yet.");
    return;
  }
  Object.assign(state, { layers, days: [...days].sort() });
  const latestIndex = state.days.indexOf(latest.day);
  state.dayIndex = latestIndex >= 0 ? latestIndex : state.days.length - 1;
  const slider = $("day");
  Object.assign(slider, { max: String(state.days.length - 1), value: String(state.dayIndex), disabled: false });
  $("day-value").textContent = day();
  setupLayers();

  const map = createMap(await dataExtent(latest));
  map.getCanvas().setAttribute("aria-label", "Map: arrow keys pan, + and - zoom, Enter shows the time series at the centre");
  const marker = new Marker({ color: "#c0392b" });
  wire(map, marker);
  window.gsm3 = { map, state }; // for the browser test and the console
  await showLegend();
}

main().catch((error) => {
  status(`The map could not start: ${error.message}`);
  console.error(error);
});
