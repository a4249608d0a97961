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
     * Apply a partial map update (pages/map.py map_update: {traces, replace, layout}) to the
     * drawn map with Plotly.react, without touching the Graph's figure prop: Dash would copy
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
