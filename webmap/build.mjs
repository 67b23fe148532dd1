// Rebuild the web map's vendored files in gsm3_ops/serve/static/vendor/ from the pinned npm
// packages of package-lock.json: MapLibre GL JS (its ES-module bundle, worker and CSS) and the
// Natural Earth coastlines and country borders of world-atlas, converted from TopoJSON to
// GeoJSON lines. The output is committed, so that neither npm nor the internet is needed to
// serve the map.
//
//   node webmap/build.mjs            (runs `npm ci` in webmap/, node_modules/ is git-ignored)

import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "node_modules");
const out = join(here, "..", "gsm3_ops", "serve", "static", "vendor");
const SCALE = "50m"; // Natural Earth 1:50m: detailed enough for a 9 km product
// Visvalingam simplification: drop the vertices whose triangle is under MIN_AREA square
// degrees (a triangle of about one 9 km product cell), then round to DECIMALS (0.01 degree,
// about 1 km).
const MIN_AREA = 3e-3;
const DECIMALS = 2;
const MIN_SIZE = 0.1; // islets smaller than this (degrees, about a product cell) are dropped

execFileSync("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], {
  cwd: here,
  stdio: "inherit",
});
const { mesh } = await import("topojson-client");
const { presimplify, simplify } = await import("topojson-simplify");

const readJson = (path) => JSON.parse(readFileSync(path, "utf8"));
const version = (name) => readJson(join(modules, name, "package.json")).version;

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

// MapLibre GL JS v6 is ES modules only; the bundle finds its worker next to itself
// (import.meta.url), so both go side by side. The source-map comments are dropped: the maps
// are not vendored and a browser's developer tools would ask for them.
const maplibre = join(modules, "maplibre-gl");
for (const name of ["maplibre-gl.mjs", "maplibre-gl-worker.mjs"]) {
  const code = readFileSync(join(maplibre, "dist", name), "utf8");
  writeFileSync(join(out, name), code.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, "\n"));
}
copyFileSync(join(maplibre, "dist", "maplibre-gl.css"), join(out, "maplibre-gl.css"));
copyFileSync(join(maplibre, "LICENSE.txt"), join(out, "LICENSE-maplibre-gl.txt"));

function round(coords) {
  return typeof coords[0] === "number"
    ? coords.map((v) => Number(v.toFixed(DECIMALS)))
    : coords.map(round);
}

// Whether a closed line (an islet) fits in a product cell: it is dropped.
function islet(line) {
  const [first, last] = [line[0], line[line.length - 1]];
  if (first[0] !== last[0] || first[1] !== last[1]) return false;
  const xs = line.map((p) => p[0]);
  const ys = line.map((p) => p[1]);
  return Math.max(...xs) - Math.min(...xs) < MIN_SIZE && Math.max(...ys) - Math.min(...ys) < MIN_SIZE;
}

// Lines rounded to DECIMALS, without the vertices that rounding made repeat, nor islets.
function lines(geometry) {
  const parts = round(geometry.coordinates)
    .map((line) => line.filter((p, i) => i === 0 || p[0] !== line[i - 1][0] || p[1] !== line[i - 1][1]))
    .filter((line) => line.length > 1 && !islet(line));
  return { type: "MultiLineString", coordinates: parts };
}

function writeLines(name, geometry, properties) {
  const collection = {
    type: "FeatureCollection",
    features: [{ type: "Feature", properties, geometry: lines(geometry) }],
  };
  writeFileSync(join(out, name), JSON.stringify(collection));
}

const atlas = join(modules, "world-atlas");
const readTopology = (name) => simplify(presimplify(readJson(join(atlas, name))), MIN_AREA);
const land = readTopology(`land-${SCALE}.json`);
const countries = readTopology(`countries-${SCALE}.json`);
const source = `Natural Earth 1:${SCALE} (public domain) via world-atlas ${version("world-atlas")}`;
// Coastlines: every arc of the land polygons. Borders: the arcs two countries share.
writeLines("coastlines.geojson", mesh(land, land.objects.land), { kind: "coastline", source });
writeLines(
  "borders.geojson",
  mesh(countries, countries.objects.countries, (a, b) => a !== b),
  { kind: "border", source },
);
copyFileSync(join(atlas, "LICENSE"), join(out, "LICENSE-world-atlas.txt"));

const versions = {
  "maplibre-gl": version("maplibre-gl"),
  "world-atlas": version("world-atlas"),
  "topojson-client": version("topojson-client"),
  "topojson-simplify": version("topojson-simplify"),
  simplify_min_area_deg2: MIN_AREA,
  islet_min_size_deg: MIN_SIZE,
  natural_earth_scale: SCALE,
  coordinate_decimals: DECIMALS,
  rebuild: "node webmap/build.mjs",
};
writeFileSync(join(out, "VERSIONS.json"), `${JSON.stringify(versions, null, 2)}\n`);
console.log(`vendored files written to ${out}`);
