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
