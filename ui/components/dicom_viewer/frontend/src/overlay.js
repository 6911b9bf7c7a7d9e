// The explanation layer: a heat map drawn on its own canvas above Cornerstone's, following the
// viewport's camera. Pure pixel work (no Cornerstone imports) so it reads on its own.

// Perceptually uniform sequential map (matplotlib's magma, 9 stops, linearly interpolated).
const MAGMA = [
  [0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129], [181, 54, 122],
  [229, 80, 100], [251, 135, 97], [254, 194, 135], [252, 253, 191],
];
// Diverging map for signed (SHAP) maps: blue (against) to red (for), white never used at 0
// because values under the threshold are transparent.
const DIVERGING = [
  [5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222],
  [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31],
];

function sample(stops, t) {
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2);
  const f = x - i;
  return stops[i].map((c, k) => Math.round(c + f * (stops[i + 1][k] - c)));
}

/**
 * Decode the map sent by Python: uint8, 0..255 for [0, 1] maps, 0..255 for [-1, 1] when signed
 * (128 is zero). Returns a Float32Array of values in [0, 1] or [-1, 1].
 */
export function decodeMap(bytes, signed) {
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    out[i] = signed ? (bytes[i] - 128) / 127 : bytes[i] / 255;
  }
  return out;
}

/**
 * Paint `values` (rows x columns) into an RGBA canvas: transparent below `threshold` (by
 * magnitude for signed maps), magma (or diverging) above it; `outline` keeps only the border
 * of the region over the threshold, fully opaque, so the anatomy under it stays visible.
 */
export function paintMap(values, columns, rows, { threshold, outline, signed }) {
  const canvas = document.createElement("canvas");
  canvas.width = columns;
  canvas.height = rows;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(columns, rows);
  const above = (i) => Math.abs(values[i]) >= threshold && values[i] !== 0;
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < columns; x++) {
      const i = y * columns + x;
      if (!above(i)) continue;
      if (outline) {
        const inner =
          x > 0 && x < columns - 1 && y > 0 && y < rows - 1 &&
          above(i - 1) && above(i + 1) && above(i - columns) && above(i + columns);
        if (inner) continue;
      }
      const v = values[i];
      const rgb = signed ? sample(DIVERGING, (v + 1) / 2) : sample(MAGMA, 0.25 + 0.75 * v);
      img.data.set([rgb[0], rgb[1], rgb[2], 255], i * 4);
    }
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}

/**
 * Draw `mapCanvas` over the image on `target`, where `corners` are the canvas positions (CSS
 * pixels) of the image's top-left and bottom-right edges.
 */
export function drawLayer(target, mapCanvas, corners, opacity) {
  const dpr = window.devicePixelRatio || 1;
  const ctx = target.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, target.width, target.height);
  if (!mapCanvas || opacity <= 0) return;
  const [[x0, y0], [x1, y1]] = corners;
  ctx.globalAlpha = opacity;
  ctx.imageSmoothingEnabled = false; // one map pixel is one image pixel: no blur across the border
  ctx.drawImage(mapCanvas, x0 * dpr, y0 * dpr, (x1 - x0) * dpr, (y1 - y0) * dpr);
  ctx.globalAlpha = 1;
}
