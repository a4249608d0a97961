/*
 * The map page's WebGL scatter: every material drawn by regl-scatterplot
 * (assets/vendor/regl-scatterplot-*.min.js), coloured from a palette index per point.
 *
 * The server writes updates (components/map_points.py scatter_update) to the page's
 * "map-update" store; matmapScatter.apply draws them in order:
 *   points  {xy: base64 float32 (n, 2)}  new positions (first draw, the other map)
 *   colors  {index: base64 uint8 (n,), palette, sizes, top, palette_key}  a colour mode
 *   select  [rows]  rings (regl-scatterplot's selection outline); [] clears them
 *   zoom    {x, y, width, height} (the scatter's coordinates) or "home"
 * A recolour keeps the positions and their spatial index on the GPU side: one byte per point
 * and one redraw. Hovering a point writes its row to the store "<host>-hovered" and a click
 * writes it to "<host>-clicked" (dash_clientside.set_props), for the page's server callbacks.
 */
(function () {
  var scatter = { host: null, plot: null, points: null, index: null, top: null, paletteKey: null, ordered: false,
                  queue: Promise.resolve() };

  function typed(value) {
    return (typeof matmapDecoded === "function") ? matmapDecoded(value) : value;  // assets/matmap.js
  }

  function setProps(id, props) {
    if (window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props(id, props);
    }
  }

  /* Draw order: the points of the palette entries in `top` over the others. */
  function drawOrder(index, top) {
    var onTop = new Uint8Array(256), n = index.length, order = new Int32Array(n), low = 0, high = 0, i;
    top.forEach(function (entry) { onTop[entry] = 1; });
    for (i = 0; i < n; i++) { if (!onTop[index[i]]) { high++; } }
    for (i = 0; i < n; i++) { if (onTop[index[i]]) { order[high++] = i; } else { order[low++] = i; } }
    return order;
  }

  /* Whether typed arrays `a` and `b` hold the same values (`a` may be null). */
  function sameBytes(a, b) {
    if (!a || a.length !== b.length) { return false; }
    for (var i = 0; i < a.length; i++) { if (a[i] !== b[i]) { return false; } }
    return true;
  }

  /* The scatter in element `hostId`, created (with its canvas) on first use or after the page was re-rendered. */
  function plotIn(hostId) {
    var host = document.getElementById(hostId);
    if (!host || typeof window.createScatterplot !== "function") { return null; }
    if (scatter.plot && scatter.host === host && host.isConnected) { return scatter.plot; }
    if (scatter.plot) { scatter.plot.destroy(); scatter.plot = null; }
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
    scatter.points = scatter.index = scatter.top = scatter.paletteKey = null;
    scatter.ordered = false;
    var watch = setInterval(function () {  // the page was left: free the WebGL context and its buffers
      if (host.isConnected) { return; }
      clearInterval(watch);
      if (scatter.plot === plot) {  // (a new map page's scatter destroyed it already otherwise)
        scatter.plot = scatter.host = null;
        plot.destroy();
      }
    }, 1000);
    return plot;
  }

  /* Resolves after the scatter's next render (regl-scatterplot's "draw" event), which it asks for. */
  function nextRender(plot) {
    return new Promise(function (resolve) {
      plot.subscribe("draw", function () { resolve(true); }, 1);
      plot.redraw();
    });
  }

  function applyNow(update) {
    var plot = plotIn(update.host);
    if (!plot) { return Promise.resolve(false); }
    var began = performance.now();
    var drawnBefore = !!scatter.points;
    if (update.points) {
      // array-oriented points ([x, y, palette index]), which regl-scatterplot takes as they are: a
      // recolour rewrites the third entries (object-oriented arrays are converted on every draw)
      var xy = typed(update.points.xy), n = xy.length / 2;
      scatter.points = new Array(n);
      for (var i = 0; i < n; i++) { scatter.points[i] = [xy[2 * i], xy[2 * i + 1], 0]; }
    }
    if (update.colors && scatter.points) {
      var colors = update.colors, index = typed(colors.index);
      for (var j = 0; j < index.length; j++) { scatter.points[j][2] = index[j]; }
      var reuse = !update.points && scatter.index && scatter.index.length === index.length;
      // the same colours (the other map, a search's whole redraw): the draw order stands
      var top = JSON.stringify(colors.top), recoloured = !(scatter.top === top && sameBytes(scatter.index, index));
      var order = recoloured && colors.top.length ? Array.from(drawOrder(index, colors.top)) : null;
      // every set() costs regl-scatterplot one more redraw of all points: the palette is the map's
      // one shared palette (set with the first colours), the draw order changes only with the top layer
      var look = {};
      if (colors.palette_key !== scatter.paletteKey) {
        look.pointColor = colors.palette;
        look.pointSize = colors.sizes;
        scatter.paletteKey = colors.palette_key;
      }
      // the draw order before the draw, drawn with it (regl-scatterplot keeps it across draws of
      // as many points: the other map's positions too)
      if (recoloured && (order !== null || scatter.ordered)) { look.pointOrder = order; }
      if (Object.keys(look).length) { plot.set(look); }
      var options = { zDataType: "categorical", preventFilterReset: true };
      if (reuse) { options.spatialIndex = plot.get("spatialIndex"); }
      var rings = update.select && update.select.length ? update.select : null;
      if (rings && !drawnBefore) { options.select = rings; }  // the first points: rings once they are there
      var rendered = plot.draw(scatter.points, options).then(function () {  // resolves once the new points are rendered
        plot.get("canvas").parentNode.setAttribute("data-drawn", "1");
        return true;
      });
      if (recoloured) { scatter.ordered = order !== null; }
      scatter.index = index;
      scatter.top = top;
      // the rest of the update in the same task, before the frame that renders the points: one
      // render for all of it (a render of 141,659 points is ~0.16 s of software WebGL)
      if (rings && drawnBefore) { plot.select(rings, { preventEvent: true }); }
      if (update.select && !update.select.length) { plot.deselect({ preventEvent: true }); }
      moveCamera(plot, update.zoom);
      return finished(rendered, began);
    }
    // rings and zoom alone (a search): one render
    var moves = false;
    if (update.select) {
      if (update.select.length) { plot.select(update.select, { preventEvent: true }); }
      else { plot.deselect({ preventEvent: true }); }
      moves = true;
    }
    moves = moveCamera(plot, update.zoom) || moves;
    return finished(moves ? nextRender(plot) : Promise.resolve(true), began);
  }

  /* Zoom the scatter to `zoom` ("home" or a rectangle, see above); whether it moved. */
  function moveCamera(plot, zoom) {
    if (zoom === "home") { plot.zoomToOrigin({ transition: false }); return true; }
    if (zoom) { plot.zoomToArea(zoom, { transition: false }); return true; }
    return false;
  }

  /* After `rendered`: count the update as drawn (see below). */
  function finished(rendered, began) {
    return rendered.then(function () {
      // read by bench/app.py and the browser tests: updates drawn, seconds the last one took
      // (from its arrival to the render that shows it), when it was rendered (performance.now() ms)
      window.matmapMapUpdates = (window.matmapMapUpdates || 0) + 1;
      window.matmapLastUpdateSeconds = (performance.now() - began) / 1000;
      window.matmapLastDrawnAt = performance.now();
      return true;
    });
  }

  window.matmapScatter = {
    /* The regl-scatterplot instance drawn now (null before the first draw), for tests and benchmarks. */
    plot: function () { return scatter.plot; },
    /* The drawn scatter's state, for tests: points, colour index, selected rows. */
    state: function () {
      var plot = scatter.plot;
      return plot ? { n: scatter.points ? scatter.points.length : 0, index: scatter.index,
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
