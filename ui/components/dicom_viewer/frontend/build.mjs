// Bundle the viewer with esbuild into ../build (ignored by git; made by scripts/build-viewer).
import { build } from "esbuild";
import { copyFileSync, mkdirSync, statSync } from "node:fs";

const out = new URL("../build/", import.meta.url).pathname;
mkdirSync(out, { recursive: true });
await build({
  entryPoints: ["src/main.js"],
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2020",
  outfile: `${out}viewer.js`,
  legalComments: "external",
  // vtk.js imports two Node built-ins on a path the viewer never takes: small stand-ins.
  alias: { events: "./src/shims/events.js", url: "./src/shims/url.js" },
  metafile: true,
  logLevel: "warning",
});
for (const name of ["index.html", "viewer.css"]) copyFileSync(`src/${name}`, `${out}${name}`);
console.log(`viewer.js: ${statSync(`${out}viewer.js`).size} bytes`);
