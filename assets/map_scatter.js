/*
 * The map page's WebGL scatter: every material drawn by regl-scatterplot
 * (assets/vendor/regl-scatterplot-*.min.js), coloured from a palette index per point.
 *
 * The server writes updates (components/map_points.py scatter_update) to the page's
 * "map-update" store; matmapScatter.apply draws them in order:
 *   points  {xy: base64 float32 (n, 2)}  new positions (first draw, the other map)
 *   colors  {index: base64 uint8 (n,), palette, sizes, top_from}  a colour mode
 *   select  [rows]  rings (regl-scatterplot's selection outline); [] clears them
 *   zoom    {x, y, width, height} (the scatter's coordinates) or "home"
 * A recolour keeps the positions and their spatial index on the GPU side: one byte per point
 * and one redraw. Hovering a point writes its row to the store "<host>-hovered" and a click
 * writes it to "<host>-clicked" (dash_clientside.set_props), for the page's server callbacks.
 */
(function () {
  var scatter = { host: null, plot: null, x: null, y: null, index: null, queue: Promise.resolve() };

  function typed(value) {
    return (typeof matmapDecoded === "function") ? matmapDecoded(value) : value;  // assets/matmap.js
  }

  function setProps(id, props) {
    if (window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props(id, props);
    }
  }

  /* Draw order: palette entries below top_from first, the rest over them. */
  function drawOrder(index, topFrom) {
    var n = index.length, order = new Int32Array(n), low = 0, high = 0, i;
    for (i = 0; i < n; i++) { if (index[i] < topFrom) { high++; } }
    for (i = 0; i < n; i++) { if (index[i] < topFrom) { order[low++] = i; } else { order[high++] = i; } }
    return order;
  }

  /* The scatter in element `hostId`, created (with its canvas) on first use or after the page was re-rendered. */
  function plotIn(hostId) {
    var host = document.getElementById(hostId);
    if (!host || typeof window.createScatterplot !== "function") { return null; }
    if (scatter.plot && scatter.host === host && host.isConnected) { return scatter.plot; }
    if (scatter.plot) { scatter.plot.destroy(); }
    var canvas = document.createElement("canvas");
    canvas.className = "map-scatter__canvas";
    host.appendChild(canvas);
    var plot;
    try {
      plot = window.createScatterplot({
        canvas: canvas, width: "auto", height: "auto", backgroundColor: "#ffffff",
        opacity: 0.85, colorBy: "valueA", sizeBy: "valueA",
        pointColorActive: "#111111", pointOutlineWidth: 3, pointSizeSelected: 5,
        actionKeyMap: {}, lassoOnLongPress: false, lassoInitiator: false,
        deselectOnDblClick: false, deselectOnEscape: false, opacityInactiveScale: 1,
      });
    } catch (error) {  // no WebGL in this browser: say so where the map would be
      console.error("matmap: WebGL scatter failed", error);
      canvas.remove();
      var note = host.parentNode && host.parentNode.querySelector(".map-drawing");
      if (note) { note.textContent = "This browser could not start WebGL, which the map needs. Try another browser, or enable hardware acceleration."; }
      return null;
    }
    var hoverTimer = null;
    plot.subscribe("pointOver", function (row) {
      clearTimeout(hoverTimer);  // a sweep across the map asks the server once, for where it stops
      hoverTimer = setTimeout(function () { setProps(hostId + "-hovered", { data: row }); }, 60);
    });
    plot.subscribe("select", function (event) {  // a click on a point (programmatic rings send no event)
      if (event && event.points && event.points.length === 1) {
        setProps(hostId + "-clicked", { data: { row: event.points[0], at: Date.now() } });
      }
    });
    canvas.addEventListener("dblclick", function () { plot.zoomToOrigin({ transition: true, transitionDuration: 300 }); });
    scatter.host = host;
    scatter.plot = plot;
    scatter.x = scatter.y = scatter.index = null;
    return plot;
  }

  function applyNow(update) {
    var plot = plotIn(update.host);
    if (!plot) { return Promise.resolve(false); }
    var began = performance.now();
    var moved = false, steps = Promise.resolve();
    if (update.points) {
      var xy = typed(update.points.xy), n = xy.length / 2;
      scatter.x = new Float32Array(n);
      scatter.y = new Float32Array(n);
      for (var i = 0; i < n; i++) { scatter.x[i] = xy[2 * i]; scatter.y[i] = xy[2 * i + 1]; }
      moved = true;
    }
    if (update.colors && scatter.x) {
      var index = typed(update.colors.index);
      var values = new Float32Array(index.length);
      for (var j = 0; j < index.length; j++) { values[j] = index[j]; }
      var reuse = !moved && scatter.index && scatter.index.length === index.length;
      var topFrom = update.colors.top_from;
      var order = topFrom < update.colors.palette.length ? Array.from(drawOrder(index, topFrom)) : null;
      var look = { pointColor: update.colors.palette, pointSize: update.colors.sizes };
      // same points: the draw order goes in with the colours (one redraw); new points reset it, so it follows the draw
      plot.set(reuse ? Object.assign(look, { pointOrder: order }) : look);
      steps = plot.draw({ x: scatter.x, y: scatter.y, valueA: values },
        Object.assign({ zDataType: "categorical", preventFilterReset: true },
          reuse ? { spatialIndex: plot.get("spatialIndex") } : {})).then(function () {
        if (!reuse && order) { plot.set({ pointOrder: order }); }
      });
      scatter.index = index;
      steps = steps.then(function () { plot.get("canvas").parentNode.setAttribute("data-drawn", "1"); });
    }
    return steps.then(function () {
      if (update.select) {
        if (update.select.length) { plot.select(update.select, { preventEvent: true }); }
        else { plot.deselect({ preventEvent: true }); }
      }
      if (update.zoom === "home") { return plot.zoomToOrigin({ transition: false }); }
      if (update.zoom) { return plot.zoomToArea(update.zoom, { transition: false }); }
      return null;
    }).then(function () {
      return new Promise(function (resolve) {  // until the frame with the update is drawn
        requestAnimationFrame(function () { requestAnimationFrame(function () { resolve(true); }); });
      });
    }).then(function () {
      // read by bench/app.py and the browser tests: updates drawn, seconds the last one took
      window.matmapMapUpdates = (window.matmapMapUpdates || 0) + 1;
      window.matmapLastUpdateSeconds = (performance.now() - began) / 1000;
      return true;
    });
  }

  window.matmapScatter = {
    /* The regl-scatterplot instance drawn now (null before the first draw), for tests and benchmarks. */
    plot: function () { return scatter.plot; },
    /* The drawn scatter's state, for tests: points, colour index, selected rows. */
    state: function () {
      var plot = scatter.plot;
      return plot ? { n: scatter.x ? scatter.x.length : 0, index: scatter.index,
        selected: plot.get("selectedPoints"), camera: Array.from(plot.get("cameraView")) } : null;
    },
    /* The screen position (CSS px, page) of row `row`, for tests that hover or click it. */
    screenPosition: function (row) {
      var plot = scatter.plot;
      if (!plot) { return null; }
      var at = plot.getScreenPosition(row), box = plot.get("canvas").getBoundingClientRect();
      return at ? [box.left + at[0], box.top + at[1]] : null;
    },
  };

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    matmapScatter: {
      /**
       * Apply an update (see above) after the previous ones; waits (up to 30 s) for the host
       * element and the library. Resolves to the number of updates applied so far.
       */
      apply: function (update, applied) {
        if (!update) { return window.dash_clientside.no_update; }
        var count = (applied || 0) + 1;
        var waitForHost = function () {
          return new Promise(function (resolve) {
            var tries = 0;
            (function attempt() {
              if (document.getElementById(update.host) && typeof window.createScatterplot === "function") { resolve(true); }
              else if (tries++ < 600) { setTimeout(attempt, 50); } else { resolve(false); }
            })();
          });
        };
        scatter.queue = scatter.queue.then(waitForHost).then(function (ready) {
          return ready ? applyNow(update) : false;
        }).catch(function (error) {  // the drawn map stays as it was; say why in the console
          console.error("matmap: the map update failed", error);
          return false;
        });
        return scatter.queue.then(function () { return count; });
      },

      /**
       * Save the drawn view as a PNG at twice the screen resolution (points only; the key is
       * HTML beside it). Resolves to the number of images saved.
       */
      savePng: function (clicks) {
        var plot = scatter.plot;
        if (!clicks || !plot) { return window.dash_clientside.no_update; }
        return Promise.resolve(plot.export({ scale: 2 })).then(function (image) {
          var canvas = document.createElement("canvas");
          canvas.width = image.width;
          canvas.height = image.height;
          canvas.getContext("2d").putImageData(image, 0, 0);
          return new Promise(function (resolve) {
            canvas.toBlob(function (blob) {
              var link = document.createElement("a");
              link.href = URL.createObjectURL(blob);
              link.download = "matmap.png";
              link.click();
              setTimeout(function () { URL.revokeObjectURL(link.href); }, 10000);
              resolve(clicks);
            }, "image/png");
          });
        });
      },
    },
  });
})();
