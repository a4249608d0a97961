/* Client-side helpers of matmap, used through dash.ClientsideFunction(namespace="matmap"). */
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
     * Run plotly call fn() on gd after the ones queued before it: a relayout still running
     * when a react starts could otherwise leave the figure half updated. Returns its promise.
     */
    queue: function (gd, fn) {
      var next = (gd._matmapQueue || Promise.resolve()).then(fn, fn);
      gd._matmapQueue = next.then(function () {}, function () {});
      return next;
    },

    /**
     * Equal aspect for the main map without plotly's scaleanchor (0.6 s per zoom step at 141k
     * points): the x and y ranges widened around their centres so that one t-SNE unit is as
     * many pixels on both axes. Returns {x: [..], y: [..]}, or null before the map is laid out.
     */
    fitAspect: function (gd, xRange, yRange) {
      var full = gd._fullLayout;
      if (!full || !full.xaxis || !full.yaxis || !full.xaxis._length || !full.yaxis._length) { return null; }
      var xr = (xRange || full.xaxis.range).map(Number), yr = (yRange || full.yaxis.range).map(Number);
      var perPixel = Math.max((xr[1] - xr[0]) / full.xaxis._length, (yr[1] - yr[0]) / full.yaxis._length);
      var xc = (xr[0] + xr[1]) / 2, yc = (yr[0] + yr[1]) / 2;
      var xh = perPixel * full.xaxis._length / 2, yh = perPixel * full.yaxis._length / 2;
      return {x: [xc - xh, xc + xh], y: [yc - yh, yc + yh]};
    },

    /**
     * Once the map's figure is drawn: fit its ranges to an equal aspect, and again whenever
     * plotly autoranges (a double-click). Leaves the class name as it is.
     */
    keepMapAspect: function (figure, className) {
      var ns = window.dash_clientside.matmap;
      var tries = 0;
      (function attempt() {
        var gd = document.querySelector("#map-graph .js-plotly-plot");
        if (!gd || !gd._fullLayout || !gd._fullLayout.xaxis || !window.Plotly) {
          if (tries++ < 600) { setTimeout(attempt, 50); }
          return;
        }
        var fit = function () {
          ns.queue(gd, function () {
            var r = ns.fitAspect(gd);
            return r ? window.Plotly.relayout(gd, {"xaxis.range": r.x, "yaxis.range": r.y}) : null;
          });
        };
        if (!gd._matmapAspect) {
          gd._matmapAspect = true;
          gd.on("plotly_relayout", function (change) {
            if (change && (change["xaxis.autorange"] || change["yaxis.autorange"])) { fit(); }
          });
        }
        fit();
      })();
      return window.dash_clientside.no_update;
    },

    /**
     * Load a page afresh (one navigation; leaving the 141k-point map in-app cost more than a
     * fresh load of the material page).
     */
    openPage: function (href) {
      if (href) { window.location.assign(href); }
      return window.dash_clientside.no_update;
    },

    /**
     * Apply a partial map update (pages/map.py map_update: {traces, replace, layout}) to the
     * drawn map with Plotly.react (Plotly.relayout when only the layout changes), without
     * touching the Graph's figure prop: Dash would copy
     * and redraw the whole 140k-point figure for a Patch. Waits (up to 30 s) for the map to be
     * drawn; resolves to the number of updates applied so far.
     */
    applyMapUpdate: function (update, applied) {
      if (!update) { return window.dash_clientside.no_update; }
      var count = (applied || 0) + 1;
      return new Promise(function (resolve) {
        var tries = 0;
        (function attempt() {
          var gd = document.querySelector("#map-graph .js-plotly-plot");
          if (!gd || !gd._fullLayout || !gd.data || !window.Plotly) {
            if (tries++ < 600) { setTimeout(attempt, 50); } else { resolve(window.dash_clientside.no_update); }
            return;
          }
          var began = performance.now();
          var failed = function (error) {  // the figure stays as it was; say why in the console
            console.error("matmap: the map update failed", error);
            done();
          };
          var done = function () {
            // read by bench/app.py: how many updates were drawn, and how long plotly took for the last
            window.matmapMapUpdates = (window.matmapMapUpdates || 0) + 1;
            window.matmapLastUpdateSeconds = (performance.now() - began) / 1000;
            resolve(count);
          };
          var ns = window.dash_clientside.matmap;
          var axes = update.layout || {};
          if (axes.xaxis && axes.xaxis.range && axes.yaxis && axes.yaxis.range) {  // equal aspect
            var fitted = ns.fitAspect(gd, axes.xaxis.range, axes.yaxis.range);
            if (fitted) {
              update = Object.assign({}, update, {layout: Object.assign({}, axes, {
                xaxis: Object.assign({}, axes.xaxis, {range: fitted.x}),
                yaxis: Object.assign({}, axes.yaxis, {range: fitted.y})})});
            }
          }
          var layoutOnly = !Object.keys(update.traces || {}).length && !Object.keys(update.replace || {}).length;
          if (layoutOnly) {  // rings and zoom: a relayout redraws, where react would diff every trace
            var flat = {};
            Object.keys(update.layout || {}).forEach(function (key) {
              var value = update.layout[key];
              if (value && typeof value === "object" && !Array.isArray(value)) {
                Object.keys(value).forEach(function (attr) { flat[key + "." + attr] = value[attr]; });
              } else {
                flat[key] = value;
              }
            });
            ns.queue(gd, function () { return window.Plotly.relayout(gd, flat); }).then(done, failed);
            return;
          }
          ns.queue(gd, function () {  // built when its turn comes: from the figure as drawn then
            var data = gd.data.slice();
            Object.keys(update.traces || {}).forEach(function (key) {
              data[Number(key)] = Object.assign({}, data[Number(key)], update.traces[key]);
            });
            Object.keys(update.replace || {}).forEach(function (key) { data[Number(key)] = update.replace[key]; });
            var layout = Object.assign({}, gd.layout);
            Object.keys(update.layout || {}).forEach(function (key) {
              var value = update.layout[key];
              layout[key] = (value && typeof value === "object" && !Array.isArray(value))
                ? Object.assign({}, layout[key], value) : value;
            });
            var autoranged = layout.xaxis && layout.xaxis.autorange === true;
            return window.Plotly.react(gd, data, layout).then(function () {
              var r = autoranged ? ns.fitAspect(gd) : null;  // the other map, autoranged: equal aspect
              return r ? window.Plotly.relayout(gd, {"xaxis.range": r.x, "yaxis.range": r.y}) : null;
            });
          }).then(done, failed);
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
