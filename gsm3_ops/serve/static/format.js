// Number, unit and label formatting shared by the legend, the chart and the point details.

// Short names of the published layers, for the layer switch and the point details.
export const LABELS = {
  soil_moisture: "Soil moisture",
  soil_moisture_anomaly: "Anomaly",
  soil_moisture_percentile: "Percentile",
  soil_moisture_sd: "Spread (ensemble SD)",
  quality_flag: "Quality flag",
};

const SUPERSCRIPTS = { "-": "⁻", 0: "⁰", 1: "¹", 2: "²", 3: "³", 4: "⁴", 5: "⁵", 6: "⁶", 7: "⁷", 8: "⁸", 9: "⁹" };

// "m3 m-3" -> "m³ m⁻³"; "1" (dimensionless) -> "".
export function formatUnits(units) {
  if (!units || units === "1") return "";
  return units.replace(/([a-zA-Z])(-?\d+)/g, (_, symbol, power) =>
    symbol + [...power].map((c) => SUPERSCRIPTS[c]).join(""),
  );
}

// A value with as many decimals as its size needs (3 significant digits, at most 3 decimals).
export function formatNumber(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "no data";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  const magnitude = Math.abs(value);
  const decimals = magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : magnitude >= 1 ? 2 : 3;
  return value.toFixed(decimals);
}

// "bundle_id" -> "Bundle id"; a layer name -> its short label.
export function formatKey(key) {
  if (LABELS[key]) return LABELS[key];
  const words = String(key).replaceAll("_", " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}
