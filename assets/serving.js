/* Client side of the "map loading" notice (components/common.py, MapLoadingNotice). */
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  matmap_serving: {
    /** The server says the map has loaded: reload the page to show it (and stop polling). */
    reloadWhenReady: function (ready) {
      if (ready) {
        window.location.reload();
        return true;
      }
      return window.dash_clientside.no_update;
    },
  },
});
