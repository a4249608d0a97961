/* Client-side helpers of matmap, used through dash.ClientsideFunction(namespace="matmap"). */

/* Typed-array constructors of plotly's base64 array encoding ({dtype, bdata}, numpy's codes). */
var MATMAP_DTYPES = {
  f8: Float64Array, f4: Float32Array, i4: Int32Array, u4: Uint32Array,
  i2: Int16Array, u2: Uint16Array, i1: Int8Array, u1: Uint8Array,
};

/* A base64-encoded plotly array ({dtype, bdata}) as its typed array; anything else unchanged. */
function matmapDecoded(value) {
  if (!value || typeof value !== "object" || typeof value.bdata !== "string" || !MATMAP_DTYPES[value.dtype]) {
    return value;
  }
  var text = window.atob(value.bdata);
  var bytes = new Uint8Array(text.length);
  for (var i = 0; i < text.length; i++) { bytes[i] = text.charCodeAt(i); }
  return new MATMAP_DTYPES[value.dtype](bytes.buffer);
}

/*
 * Replace, in place, a trace's base64 arrays (x, y, customdata, marker.color, marker.size) by
 * typed arrays: those plotly already decoded for the drawn trace (`drawn`, its _fullData entry)
 * where it has them, else decoded here. Plotly decodes {bdata} anew on every Plotly.react, so
 * the arrays get a new identity and plotly recomputes every trace: 1.3-2 s for the 141k-point
 * map in Chromium on 2 cores even when nothing changed. With the drawn trace's own arrays an
 * unchanged trace costs nothing: a layout-only update (a search's rings and zoom, a placed
 * CIF's star) takes 0.01-0.08 s, the first one included.
 */
function matmapDecodeTrace(trace, drawn) {
  if (!trace) { return trace; }
  var adopt = function (value, drawnValue) {
    var isBase64 = value && typeof value === "object" && typeof value.bdata === "string";
    if (isBase64 && drawnValue && typeof drawnValue.length === "number" && typeof drawnValue !== "string") {
      return drawnValue;
    }
    return matmapDecoded(value);
  };
  ["x", "y", "customdata"].forEach(function (key) { trace[key] = adopt(trace[key], drawn && drawn[key]); });
  if (trace.marker) {
    var marker = drawn && drawn.marker;
    trace.marker.color = adopt(trace.marker.color, marker && marker.color);
    trace.marker.size = adopt(trace.marker.size, marker && marker.size);
  }
  return trace;
}

window.dash_clientside = Object.assign({}, window.dash_clientside, {
  matmap: {
    /**
     * Write the map view into the address bar (?color=…&element=…&highlight=…) with
     * history.replaceState: the URL can be shared, and Dash does not re-render the page
     * (which a dcc.Location change would do, resending every point).
     */
    syncMapUrl: function (color, element, highlight, view) {
      var params = new URLSearchParams();
      if (view && view !== "crystal") { params.set("view", view); }
      if (color) { params.set("color", color); }
      if (color === "element" && element) { params.set("element", element); }
      if (highlight) { params.set("highlight", highlight); }
      var query = params.toString();
      var url = window.location.pathname + (query ? "?" + query : "") + window.location.hash;
      if (url !== window.location.pathname + window.location.search + window.location.hash) {
        window.history.replaceState(window.history.state, "", url);
      }
      return window.dash_clientside.no_update;
    },

    /**
     * Apply a partial map update (components/map_figure.py map_update: {graph, traces, replace,
     * layout}) to the drawn map with Plotly.react, without touching the Graph's figure prop:
     * Dash would copy and redraw the whole 140k-point figure for a Patch. Every trace's base64
     * arrays become typed arrays first (matmapDecodeTrace), so plotly recomputes only what
     * changed. Waits (up to 30 s) for the map to be drawn; resolves to the number of updates
     * applied so far.
     */
    applyMapUpdate: function (update, applied) {
      if (!update) { return window.dash_clientside.no_update; }
      var count = (applied || 0) + 1;
      return new Promise(function (resolve) {
        var tries = 0;
        (function attempt() {
          var gd = document.querySelector("#" + update.graph + " .js-plotly-plot");
          if (!gd || !gd._fullLayout || !gd.data || !window.Plotly) {
            if (tries++ < 600) { setTimeout(attempt, 50); } else { resolve(window.dash_clientside.no_update); }
            return;
          }
          gd.data.forEach(function (trace) {  // once per drawn figure: later traces arrive decoded
            var drawn = (gd._fullData || []).filter(function (full) { return full._input === trace; })[0];
            matmapDecodeTrace(trace, drawn);
          });
          var data = gd.data.slice();
          Object.keys(update.traces || {}).forEach(function (key) {
            var changed = Object.assign({}, data[Number(key)], update.traces[key]);
            if (update.traces[key].marker) { changed.marker = Object.assign({}, update.traces[key].marker); }
            data[Number(key)] = matmapDecodeTrace(changed);
          });
          Object.keys(update.replace || {}).forEach(function (key) {
            var trace = Object.assign({}, update.replace[key]);  // copies: the store's data stays JSON
            if (trace.marker) { trace.marker = Object.assign({}, trace.marker); }
            data[Number(key)] = matmapDecodeTrace(trace);
          });
          var layout = Object.assign({}, gd.layout);
          Object.keys(update.layout || {}).forEach(function (key) {
            var value = update.layout[key];
            layout[key] = (value && typeof value === "object" && !Array.isArray(value))
              ? Object.assign({}, layout[key], value) : value;
          });
          var began = performance.now();
          var done = function () {
            // read by bench/app.py: how many updates were drawn, and how long plotly took for the last
            window.matmapMapUpdates = (window.matmapMapUpdates || 0) + 1;
            window.matmapLastUpdateSeconds = (performance.now() - began) / 1000;
            resolve(count);
          };
          var failed = function (error) {  // the drawn map stays as it was; say why in the console
            console.error("matmap: the map update failed", error);
            done();
          };
          window.Plotly.react(gd, data, layout).then(done, failed);
        })();
      });
    },

    /**
     * toggleVisibility of a CrystalToolkitScene from its "show" checklist, computed in the
     * browser (no server round trip). Keys as TOGGLES in components/structure_view.py.
     */
    sceneVisibility: function (shown) {
      var visibility = {};
      ["bonds", "polyhedra", "unit_cell"].forEach(function (key) {
        visibility[key] = (shown || []).indexOf(key) >= 0 ? 1 : 0;
      });
      return visibility;
    },
  },
});
