// Node's "url", reached only through vtk.js's XML writer, which the viewer never calls.
module.exports = { URL: globalThis.URL, URLSearchParams: globalThis.URLSearchParams };
