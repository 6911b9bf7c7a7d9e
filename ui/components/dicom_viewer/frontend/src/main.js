// Vigil's DICOM viewer: Cornerstone3D's stack viewport and tools inside a Streamlit component.
//
// Python sends the image as float32 pixels in modality units (the modality LUT already applied
// by core.imaging, so no DICOM parsing or file URL reaches the browser) and the explanation map
// as uint8. Every interaction (window/level, zoom, pan, measure, probe, overlay opacity,
// threshold, outline, flash) runs here, without a Streamlit rerun.
//
// "Compare with prior" adds a second stack viewport beside the first, for the patient's prior
// film: the same tools, one window / level for both (a change on either is copied to the other,
// in modality units), and a label on each film with its date and AI score. Without a prior the
// second pane is not even enabled, so the single-film layout and its timings are unchanged.

import {
  Enums,
  RenderingEngine,
  cache,
  eventTarget,
  imageLoader,
  init as initCore,
  setUseCPURendering,
  utilities,
} from "@cornerstonejs/core";
import {
  Enums as ToolEnums,
  LengthTool,
  PanTool,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
  addTool,
  init as initTools,
} from "@cornerstonejs/tools";

import { decodeMap, drawLayer, paintMap } from "./overlay.js";
import { connect, setFrameHeight } from "./streamlit.js";

const ENGINE_ID = "vigil-engine";
const VIEWPORT_ID = "vigil-stack";
const PRIOR_VIEWPORT_ID = "vigil-prior";
const GROUP_ID = "vigil-tools";
const { MouseBindings } = ToolEnums;
// Keys the page itself binds (next/previous case, worklist, feedback): passed up to Streamlit.
const PAGE_KEYS = new Set(["j", "k", "w", "n", "o", "p"]);
const FLASH_MS = 600;

const $ = (id) => document.getElementById(id);
const state = {
  ready: null, // Promise of the initialised engine
  engine: null,
  viewport: null,
  study: null,
  args: null,
  imageId: null,
  mapValues: null,
  mapCanvas: null,
  mode: "wl",
  flashing: false,
  inverted: false,
  generation: 0,
  prior: null, // the args.prior shown in the second pane, or null
  priorViewport: null,
  priorImageId: null,
  priorGeneration: 0,
};

function hasWebGL() {
  try {
    const canvas = document.createElement("canvas");
    return Boolean(canvas.getContext("webgl2") || canvas.getContext("webgl"));
  } catch {
    return false;
  }
}

async function initialise(forceCpu) {
  // Headless browsers and some thin clients have no WebGL: Cornerstone3D then draws 2D images on
  // the CPU. Detected here rather than configured, so the same bundle serves both.
  const cpu = forceCpu || !hasWebGL();
  await initCore();
  if (cpu) setUseCPURendering(true);
  // Images are made from Python's pixels (createAndCacheLocalImage); the stack loads them by id
  // through this loader, which only hands back what is already cached: nothing is fetched.
  imageLoader.registerImageLoader("vigil", (imageId) => ({
    promise: cache.getImage(imageId)
      ? Promise.resolve(cache.getImage(imageId))
      : Promise.reject(new Error(`image ${imageId} is not in the viewer's cache`)),
  }));
  eventTarget.addEventListener(Enums.Events.IMAGE_LOAD_ERROR, (event) => {
    const d = Array.isArray(event.detail) ? { error: event.detail[0] && event.detail[0].reason } : event.detail || {};
    $("error").textContent = `The image could not be shown: ${d.error && d.error.message ? d.error.message : String(d.error)}`;
    console.error("vigil load error", d.error && d.error.stack);
  });
  initTools();
  for (const tool of [WindowLevelTool, PanTool, ZoomTool, LengthTool]) addTool(tool);
  const engine = new RenderingEngine(ENGINE_ID);
  engine.enableElement({
    viewportId: VIEWPORT_ID,
    type: Enums.ViewportType.STACK,
    element: $("viewport"),
    defaultOptions: { background: [0, 0, 0] },
  });
  const group = ToolGroupManager.createToolGroup(GROUP_ID);
  for (const tool of [WindowLevelTool, PanTool, ZoomTool, LengthTool]) group.addTool(tool.toolName);
  group.addViewport(VIEWPORT_ID, ENGINE_ID);
  state.engine = engine;
  state.group = group;
  state.viewport = engine.getViewport(VIEWPORT_ID);
  document.body.dataset.renderer = cpu ? "cpu" : "webgl";
  $("renderer").textContent = cpu ? "CPU rendering" : "WebGL rendering";
  setMode("wl");
  const element = $("viewport");
  element.addEventListener(Enums.Events.IMAGE_RENDERED, onRendered);
  element.addEventListener(Enums.Events.VOI_MODIFIED, () => state.prior && copyWindow(state.viewport, state.priorViewport));
  element.addEventListener("mousemove", (event) => onProbe(event, "current"));
  element.addEventListener("contextmenu", (e) => e.preventDefault());
  return engine;
}

function setMode(mode) {
  const group = state.group;
  state.mode = mode;
  const primary = { Wl: WindowLevelTool, pan: PanTool, measure: LengthTool }[mode === "wl" ? "Wl" : mode];
  for (const tool of [WindowLevelTool, PanTool, ZoomTool, LengthTool]) group.setToolPassive(tool.toolName);
  const bindings = new Map([[primary.toolName, [{ mouseButton: MouseBindings.Primary }]]]);
  // Always available, whatever the left button does: middle drag pans, right drag and wheel zoom.
  const add = (tool, binding) => bindings.set(tool.toolName, [...(bindings.get(tool.toolName) || []), binding]);
  add(PanTool, { mouseButton: MouseBindings.Auxiliary });
  add(ZoomTool, { mouseButton: MouseBindings.Secondary });
  add(ZoomTool, { mouseButton: MouseBindings.Wheel });
  for (const [name, list] of bindings) group.setToolActive(name, { bindings: list });
  for (const button of document.querySelectorAll("[data-mode]")) {
    button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
  }
  document.body.dataset.mode = mode;
}

const decodedCache = new WeakMap();

function decoded(bytes) {
  // float32(bytes), decoded once per film: the probe reads it on every mouse move.
  let values = decodedCache.get(bytes);
  if (!values) {
    values = float32(bytes);
    decodedCache.set(bytes, values);
  }
  return values;
}

function float32(bytes) {
  // The bytes arrive as a Uint8Array view that may not be 4-byte aligned: copy once.
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}

function localImage(imageId, film, pixels, modality, window) {
  // A film of film.rows x film.columns float32 pixels in modality units, cached under imageId.
  const spacing = film.spacing || [1, 1];
  imageLoader.createAndCacheLocalImage(imageId, {
    scalarData: float32(pixels),
    dimensions: [film.columns, film.rows],
    spacing: [spacing[1], spacing[0]],
    frameOfReferenceUID: film.study_uid,
  });
  // The modules Cornerstone and its tools read besides the plane and pixel modules: the pixels
  // are already in modality units (slope 1, intercept 0), windowed from the file's own window.
  const add = (type, metadata) => utilities.genericMetadataProvider.add(imageId, { type, metadata });
  add("generalSeriesModule", { modality, seriesInstanceUID: film.study_uid });
  add("modalityLutModule", { rescaleSlope: 1, rescaleIntercept: 0 });
  add("voiLutModule", { windowCenter: [window.center], windowWidth: [window.width] });
  if (film.calibration) {
    // What a length means (core.imaging.spacing): Cornerstone's own label then reads "mm Proj"
    // at the detector, "mm ERMF" or "mm Calibrated" when calibrated and "mm Unknown" when the
    // header cannot tell, as in OHIF, beside the status line's words. A local image takes its
    // calibration from the cached image itself (the stack viewport merges it into what the tools read).
    cache.getImage(imageId).calibration = { type: film.calibration };
  }
}

async function showStudy(args) {
  const generation = ++state.generation;
  const imageId = `vigil:${args.study_uid}:${generation}`;
  localImage(imageId, args, args.pixels, args.modality, args.presets[0]);
  await state.viewport.setStack([imageId], 0);
  if (generation !== state.generation) return;
  state.imageId = imageId;
  state.study = args.study_uid;
  state.inverted = false;
  state.mapValues = args.map ? decodeMap(args.map, args.map_signed) : null;
  $("opacity").value = String(args.opacity);
  $("threshold").value = String(args.threshold);
  $("outline").checked = false;
  setWindow(args.presets[0]);
  fit();
  repaintMap();
  document.body.dataset.study = args.study_uid;
  document.body.dataset.state = "ready";
}

function films() {
  // The viewports on screen: the case's, then the prior's when it is compared.
  return state.priorViewport ? [state.viewport, state.priorViewport] : [state.viewport];
}

function setWindow(preset) {
  const lower = preset.center - preset.width / 2;
  for (const vp of films()) {
    vp.setProperties({ voiRange: { lower, upper: lower + preset.width } });
    vp.render();
  }
}

function copyWindow(from, to) {
  // One window / level for both films: a drag or preset on either is copied to the other. The
  // copy fires the other's VOI_MODIFIED, which finds the ranges equal and stops there.
  if (!from || !to || state.syncing) return;
  const a = from.getProperties().voiRange;
  const b = to.getProperties().voiRange;
  if (!a || !(a.upper > a.lower)) return;
  if (b && Math.abs(a.lower - b.lower) < 1e-6 && Math.abs(a.upper - b.upper) < 1e-6) return;
  state.syncing = true;
  try {
    to.setProperties({ voiRange: { lower: a.lower, upper: a.upper } });
    to.render();
  } finally {
    state.syncing = false;
  }
}

function fit() {
  for (const vp of films()) {
    vp.resetCamera();
    vp.render();
  }
}

function invert() {
  state.inverted = !state.inverted;
  for (const vp of films()) {
    vp.setProperties({ invert: state.inverted });
    vp.render();
  }
  $("invert").setAttribute("aria-pressed", String(state.inverted));
}

function overlayOn() {
  return Boolean(state.args && state.args.overlay && state.mapValues && !state.flashing);
}

function repaintMap() {
  const args = state.args;
  state.mapCanvas = state.mapValues
    ? paintMap(state.mapValues, args.columns, args.rows, {
        threshold: Number($("threshold").value),
        outline: $("outline").checked,
        signed: args.map_signed,
      })
    : null;
  drawOverlay();
}

function imageCorners() {
  const vp = state.viewport;
  const { rows, columns } = state.args;
  const topLeft = vp.worldToCanvas(utilities.imageToWorldCoords(state.imageId, [0, 0]));
  const bottomRight = vp.worldToCanvas(utilities.imageToWorldCoords(state.imageId, [columns, rows]));
  return [topLeft, bottomRight];
}

function drawOverlay() {
  const layer = $("overlay");
  const element = $("viewport");
  const dpr = window.devicePixelRatio || 1;
  const width = Math.round(element.clientWidth * dpr);
  const height = Math.round(element.clientHeight * dpr);
  if (layer.width !== width || layer.height !== height) {
    layer.width = width;
    layer.height = height;
  }
  const shown = overlayOn();
  layer.dataset.shown = String(shown);
  if (!state.imageId) return;
  drawLayer(layer, shown ? state.mapCanvas : null, imageCorners(), Number($("opacity").value));
}

function onRendered() {
  const vp = state.viewport;
  const { voiRange } = vp.getProperties();
  if (voiRange) {
    const width = voiRange.upper - voiRange.lower;
    $("window").textContent = `Window C ${(voiRange.lower + width / 2).toFixed(0)} / W ${width.toFixed(0)}`;
    document.body.dataset.window = `${(voiRange.lower + width / 2).toFixed(1)}/${width.toFixed(1)}`;
  }
  const zoom = vp.getZoom ? vp.getZoom() : 1;
  $("zoom").textContent = `zoom ${zoom.toFixed(2)}×`;
  document.body.dataset.zoom = zoom.toFixed(3);
  drawOverlay();
}

function probedFilm(which) {
  // What the probe reads on each pane: the case's film, or the prior's once it is on screen.
  if (which === "prior") {
    if (!state.prior || !state.priorImageId) return null;
    const { rows, columns, value_unit: unit } = state.prior;
    return { viewport: state.priorViewport, imageId: state.priorImageId, element: $("viewport-prior"),
      rows, columns, unit, pixels: state.args.prior_pixels, name: "Prior " };
  }
  if (!state.imageId) return null;
  const { rows, columns, value_unit: unit } = state.args;
  return { viewport: state.viewport, imageId: state.imageId, element: $("viewport"),
    rows, columns, unit, pixels: state.args.pixels, name: "" };
}

function onProbe(event, which) {
  const film = probedFilm(which);
  if (!film) return;
  const rect = film.element.getBoundingClientRect();
  const world = film.viewport.canvasToWorld([event.clientX - rect.left, event.clientY - rect.top]);
  const [x, y] = utilities.worldToImageCoords(film.imageId, world).map(Math.floor);
  if (x < 0 || y < 0 || x >= film.columns || y >= film.rows) {
    $("probe").textContent = "";
    return;
  }
  // The values sent, not the viewport's: its scalar data is the rendered copy, which the CPU
  // renderer may hold in another type or range.
  const value = decoded(film.pixels)[y * film.columns + x];
  $("probe").textContent = `${film.name}(${x}, ${y}): ${Number(value).toFixed(1)} ${film.unit}`;
}

function flash() {
  // Hide the map for a moment so the reader sees the film under it, then bring it back.
  state.flashing = true;
  drawOverlay();
  document.body.dataset.flashed = String(Number(document.body.dataset.flashed || 0) + 1);
  setTimeout(() => {
    state.flashing = false;
    drawOverlay();
  }, FLASH_MS);
}

function onKey(event) {
  if (event.target instanceof HTMLInputElement && event.target.type !== "checkbox") return;
  const key = event.key.toLowerCase();
  const presets = state.args ? state.args.presets : [];
  if (/^[1-9]$/.test(key) && Number(key) <= presets.length) {
    setWindow(presets[Number(key) - 1]);
  } else if (key === "i") invert();
  else if (key === "0" || key === "r") fit();
  else if (key === "m") setMode("measure");
  else if (key === "h") setMode("pan");
  else if (key === "escape") setMode("wl");
  else if (key === "f") flash();
  else if (key === "t") {
    $("outline").checked = !$("outline").checked;
    repaintMap();
  } else if (PAGE_KEYS.has(key) && !event.ctrlKey && !event.metaKey && !event.altKey) {
    forwardKey(event);
    return;
  } else return;
  event.preventDefault();
}

function forwardKey(event) {
  // The page's shortcuts listen on the parent document; a focused iframe would swallow them.
  try {
    const init = { key: event.key, code: event.code, bubbles: true, cancelable: true };
    window.parent.document.dispatchEvent(new KeyboardEvent("keydown", init));
  } catch {
    // A cross-origin parent: the reader clicks outside the viewer to use the page's keys.
  }
}

function onLength(event) {
  // The distance between the line's end points in world coordinates, which Cornerstone lays out
  // in millimetres from the image's pixel spacing (in pixels when the file states none). Read
  // from the handles rather than the tool's cached text, which may lag one render behind.
  const data = event.detail.annotation && event.detail.annotation.data;
  const points = data && data.handles && data.handles.points;
  if (!points || points.length < 2) return;
  state.lastAnnotation = event.detail.annotation; // for browser tests: the tool's own cachedStats
  const length = Math.hypot(...points[1].map((v, k) => v - points[0][k]));
  // What a length means comes from core.imaging.spacing ("mm at detector", "mm calibrated", ...),
  // for the film the line was drawn on.
  const onPrior = state.prior && event.detail.annotation.metadata
    && event.detail.annotation.metadata.referencedImageId === state.priorImageId;
  const film = onPrior ? state.prior : state.args;
  const unit = film.length_unit || (film.spacing ? "mm" : "px");
  $("length").textContent = `Length ${length.toFixed(1)} ${unit}`;
  document.body.dataset.length = length.toFixed(2);
  document.body.dataset.lengthUnit = unit;
}

function controls(args) {
  const box = $("presets");
  box.replaceChildren(
    ...args.presets.map((p, i) => {
      const b = document.createElement("button");
      b.textContent = `${i + 1} ${p.name}`;
      b.title = `Window C ${p.center.toFixed(0)} / W ${p.width.toFixed(0)} (key ${i + 1})`;
      b.addEventListener("click", () => setWindow(p));
      return b;
    }),
  );
  $("spacing").textContent = args.spacing_note;
  $("map-controls").hidden = !args.map;
  $("map-label").textContent = args.map_label || "";
}

async function onRender(args) {
  $("stage").style.height = `${args.height}px`;
  setFrameHeight(document.body.scrollHeight);
  const first = !state.ready;
  if (first) state.ready = initialise(args.renderer === "cpu");
  await state.ready;
  const newStudy = !state.args || args.study_uid !== state.args.study_uid || args.generation !== state.args.generation;
  state.args = args;
  controls(args);
  if (newStudy) {
    await showStudy(args);
  }
  await showPrior(args);
  if (!newStudy) drawOverlay();
}

function samePrior(a, b) {
  return Boolean(a && b && a.study_uid === b.study_uid);
}

async function showPrior(args) {
  // Show, keep or remove the prior pane so that it matches args.prior.
  const want = args.prior || null;
  $("label-current").textContent = args.label || "";
  $("label-current").hidden = !want;
  if (samePrior(want, state.prior) && state.priorImageId) return;
  const generation = ++state.priorGeneration;
  if (!want) {
    if (state.priorViewport) {
      state.group.removeViewports(ENGINE_ID, PRIOR_VIEWPORT_ID);
      state.engine.disableElement(PRIOR_VIEWPORT_ID);
    }
    Object.assign(state, { prior: null, priorViewport: null, priorImageId: null });
    $("pane-prior").hidden = true;
    document.body.dataset.prior = "";
    relayout();
    return;
  }
  $("pane-prior").hidden = false;
  state.prior = null; // no window is copied from the prior pane until its film is shown
  if (!state.priorViewport) {
    const element = $("viewport-prior");
    state.engine.enableElement({
      viewportId: PRIOR_VIEWPORT_ID,
      type: Enums.ViewportType.STACK,
      element,
      defaultOptions: { background: [0, 0, 0] },
    });
    state.group.addViewport(PRIOR_VIEWPORT_ID, ENGINE_ID);
    state.priorViewport = state.engine.getViewport(PRIOR_VIEWPORT_ID);
    if (!element.dataset.wired) {
      element.dataset.wired = "true";
      // Only once its film is on screen: while the stack loads, the prior's VOI is not the reader's.
      element.addEventListener(Enums.Events.VOI_MODIFIED, () => state.prior && copyWindow(state.priorViewport, state.viewport));
      element.addEventListener("contextmenu", (e) => e.preventDefault());
      element.addEventListener("mousemove", (event) => onProbe(event, "prior"));
    }
  }
  const imageId = `vigil-prior:${want.study_uid}:${generation}`;
  localImage(imageId, want, args.prior_pixels, args.modality, args.presets[0]);
  await state.priorViewport.setStack([imageId], 0);
  if (generation !== state.priorGeneration) return;
  state.priorImageId = imageId;
  $("label-prior").textContent = want.label;
  state.priorViewport.setProperties({ invert: state.inverted });
  copyWindow(state.viewport, state.priorViewport); // the reader's window, kept, now on both films
  state.prior = want;
  relayout();
  document.body.dataset.prior = want.study_uid;
}

function relayout() {
  // The panes changed width: let Cornerstone size its canvases again, then fit both films.
  state.engine.resize(true, false);
  fit();
  drawOverlay();
}

function wire() {
  for (const button of document.querySelectorAll("[data-mode]")) {
    button.addEventListener("click", () => setMode(button.dataset.mode));
  }
  $("invert").addEventListener("click", invert);
  $("fit").addEventListener("click", fit);
  $("flash").addEventListener("click", flash);
  $("opacity").addEventListener("input", drawOverlay);
  $("threshold").addEventListener("input", repaintMap);
  $("outline").addEventListener("change", repaintMap);
  window.addEventListener("keydown", onKey);
  // The toolbar wraps on narrow columns: keep the iframe as tall as its content.
  new ResizeObserver(() => setFrameHeight(document.body.scrollHeight)).observe(document.body);
  window.addEventListener("resize", () => state.engine && state.engine.resize(true, true));
  eventTarget.addEventListener(ToolEnums.Events.ANNOTATION_COMPLETED, onLength);
  eventTarget.addEventListener(ToolEnums.Events.ANNOTATION_MODIFIED, onLength);
  connect((args) => {
    onRender(args).catch((error) => {
      document.body.dataset.state = "error";
      $("error").textContent = `The viewer failed: ${error && error.message ? error.message : error}`;
      console.error(error);
    });
  });
}

wire();

// For browser tests and support: the viewer's state, read-only by convention.
window.vigilViewer = state;
state.toWorld = (imageId, point) => utilities.imageToWorldCoords(imageId, point);
