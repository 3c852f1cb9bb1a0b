/* driftbench report charts (report.charts=browser): draws each chart spec of driftbench/report/charts.py,
   embedded in the page as JSON (#chart-data), with uPlot. Text from the data (clip ids, model names) only
   ever reaches the page as textContent or as canvas text, never as markup. */
(function () {
  "use strict";
  var holder = document.getElementById("chart-data");
  if (!holder || typeof uPlot === "undefined") { return; }
  var specs = JSON.parse(holder.textContent);
  var drawn = [];

  function rgba(hex, a) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16 & 255) + "," + (n >> 8 & 255) + "," + (n & 255) + "," + a + ")";
  }

  function finite(v) { return v !== null && v !== undefined && isFinite(v); }

  /* one series as a table sorted by x: [x, y, (hi, lo)] (uPlot.join needs ascending x) */
  function table(s) {
    var idx = [], i;
    for (i = 0; i < s.x.length; i++) { if (finite(s.x[i])) { idx.push(i); } }
    idx.sort(function (a, b) { return s.x[a] - s.x[b]; });
    var cols = [idx.map(function (j) { return s.x[j]; }), idx.map(function (j) { return s.y[j]; })];
    if (s.band) {
      cols.push(idx.map(function (j) { return s.band.hi[j]; }), idx.map(function (j) { return s.band.lo[j]; }));
    }
    return cols;
  }

  /* the x extent of a spec: its data, whiskers and vertical lines, unless the spec fixes it */
  function xExtent(spec) {
    var lo = Infinity, hi = -Infinity;
    function see(v) { if (finite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
    spec.series.forEach(function (s) {
      s.x.forEach(see);
      if (s.err) { s.err.xlo.forEach(see); s.err.xhi.forEach(see); }
    });
    (spec.vlines || []).forEach(function (l) { see(l.x); });
    if (lo > hi) { lo = 0; hi = 1; }
    return [lo, hi];
  }

  function pad(r, f) {
    var d = (r[1] - r[0]) || Math.abs(r[0]) || 1;
    return [r[0] - (f || 0.02) * d, r[1] + (f || 0.02) * d];
  }

  /* points with labels beside them need room on the right */
  function labelled(spec) { return spec.series.some(function (s) { return s.text; }); }

  function axis(a, small, vertical, size) {
    a = a || {};
    var out = { label: a.label || null, font: (small ? 10 : 11) + "px system-ui, sans-serif",
                labelFont: (small ? 10 : 12) + "px system-ui, sans-serif", stroke: "#38424d",
                grid: { stroke: "rgba(0,0,0,0.09)", width: 1 }, ticks: { size: 4 } };
    if (!out.label) { out.labelSize = 0; }
    if (a.at) {
      out.splits = function () { return a.at; };
    } else if (a.ticks) {
      out.space = Math.max(vertical ? 24 : 40, Math.floor(size / (a.ticks + 1)));
    }
    if (a.integer) { out.incrs = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]; }
    return out;
  }

  /* reference lines, whiskers, point labels and censoring ticks: drawn on uPlot's canvas after the series */
  function overlay(spec) {
    return function (u) {
      var ctx = u.ctx, r = uPlot.pxRatio;
      ctx.save();
      ctx.beginPath();
      ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
      ctx.clip();
      function line(x0, y0, x1, y1, color, width, dash) {
        ctx.strokeStyle = color;
        ctx.lineWidth = (width || 1) * r;
        ctx.setLineDash(dash ? [5 * r, 4 * r] : []);
        ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
      }
      var left = u.bbox.left, right = u.bbox.left + u.bbox.width;
      var top = u.bbox.top, bottom = u.bbox.top + u.bbox.height;
      ctx.font = (10 * r) + "px system-ui, sans-serif";
      (spec.hlines || []).forEach(function (l) {
        var y = u.valToPos(l.y, "y", true);
        line(left, y, right, y, l.color, l.width, l.dash);
        if (l.label) { ctx.fillStyle = l.color; ctx.textAlign = "right"; ctx.fillText(l.label, right - 4 * r, y - 3 * r); }
      });
      (spec.vlines || []).forEach(function (l) {
        var x = u.valToPos(l.x, "x", true);
        line(x, top, x, bottom, l.color, l.width, l.dash);
      });
      spec.series.forEach(function (s) {
        if (!s.markers) { return; }
        s.x.forEach(function (xv, i) {
          var yv = s.y[i];
          if (!finite(xv) || !finite(yv)) { return; }
          var x = u.valToPos(xv, "x", true), y = u.valToPos(yv, "y", true);
          if (s.markers === "|") { line(x, y - 5 * r, x, y + 5 * r, s.color, 1.3, false); return; }
          if (s.err) {
            var cap = 3 * r;
            if (finite(s.err.xlo[i]) && finite(s.err.xhi[i])) {
              var a = u.valToPos(s.err.xlo[i], "x", true), b = u.valToPos(s.err.xhi[i], "x", true);
              line(a, y, b, y, s.color, 1, false); line(a, y - cap, a, y + cap, s.color, 1, false);
              line(b, y - cap, b, y + cap, s.color, 1, false);
            }
            if (finite(s.err.ylo[i]) && finite(s.err.yhi[i])) {
              var c = u.valToPos(s.err.ylo[i], "y", true), d = u.valToPos(s.err.yhi[i], "y", true);
              line(x, c, x, d, s.color, 1, false); line(x - cap, c, x + cap, c, s.color, 1, false);
              line(x - cap, d, x + cap, d, s.color, 1, false);
            }
          }
          ctx.setLineDash([]);
          ctx.beginPath(); ctx.arc(x, y, 4 * r, 0, 2 * Math.PI);
          ctx.fillStyle = s.hollow ? "#fff" : s.color; ctx.fill();
          ctx.strokeStyle = s.color; ctx.lineWidth = 1.5 * r; ctx.stroke();
          if (s.text && s.text[i]) {
            ctx.fillStyle = "#1d232b"; ctx.textAlign = "left"; ctx.fillText(s.text[i], x + 6 * r, y - 5 * r);
          }
        });
      });
      ctx.restore();
    };
  }

  /* one set of axes */
  function plotXY(el, spec, width, small, xRange) {
    var lines = spec.series.filter(function (s) { return !s.markers; });
    var tables = lines.map(table);
    var data = tables.length ? uPlot.join(tables) : [[xRange[0], xRange[1]]];
    var xLabel = spec.x && spec.x.label;  /* the curves' upper panel leaves its time label to the panel below */
    var series = [{ label: (!xLabel || xLabel.indexOf("time") === 0) ? "t (s)" : "x" }];
    var bands = [], hidden = [], k = 1;
    lines.forEach(function (s) {
      var path = s.step ? uPlot.paths.stepped({ align: 1 }) : undefined;
      series.push({ label: s.label, stroke: rgba(s.color, s.alpha === undefined ? 1 : s.alpha),
                    width: s.width, points: { show: false }, paths: path });
      if (!s.legend) { hidden.push(k); }
      k += 1;
      if (s.band) {
        series.push({ label: s.label + " upper 95%", stroke: "transparent", width: 0, points: { show: false }, paths: path });
        series.push({ label: s.label + " lower 95%", stroke: "transparent", width: 0, points: { show: false }, paths: path });
        bands.push({ series: [k, k + 1], fill: rgba(s.color, s.band.alpha) });
        hidden.push(k, k + 1);
        k += 2;
      }
    });
    /* small multiples go without: their group's title names the colours, and a legend under the first panel
       alone would unalign the grid's first row */
    var legend = !small && !!spec.legend && lines.some(function (s) { return s.legend; });
    var y = spec.y || {};
    var yRange = function (u, lo, hi) {
      var auto = uPlot.rangeNum(finite(lo) ? lo : 0, finite(hi) ? hi : 1, 0.1, true);
      return [finite(y.min) ? y.min : auto[0], finite(y.max) ? y.max : auto[1]];
    };
    var opts = {
      width: width, height: spec.height, title: spec.title || undefined,
      series: series, bands: bands,
      scales: { x: { time: false, range: function () { return xRange; } }, y: { range: yRange } },
      axes: [axis(spec.x, small, false, width - 60), axis(y, small, true, spec.height - 50)],
      legend: { show: legend, live: true },
      cursor: { drag: { x: true, y: false }, points: { size: 5 } },
      hooks: { draw: [overlay(spec)] }
    };
    var u = new uPlot(opts, data, el);
    if (legend) {
      var rows = u.root.querySelectorAll(".u-legend .u-series");
      hidden.forEach(function (i) { if (rows[i]) { rows[i].style.display = "none"; } });
    }
    if (small) { u.root.querySelectorAll(".u-title").forEach(function (t) { t.style.fontSize = "11px"; }); }
    drawn.push({ u: u, el: el, cols: 1, most: spec.width || Infinity });
    return u;
  }

  function draw(el, spec) {
    var width = Math.max(240, el.clientWidth || 800);
    if (spec.kind === "xy") {
      plotXY(el, spec, Math.min(width, spec.width || width), false,
             spec.x && finite(spec.x.min) ? [spec.x.min, spec.x.max] : pad(xExtent(spec), labelled(spec) ? 0.12 : 0.02));
      return;
    }
    var cols = Math.max(1, spec.cols || 1);
    if (spec.title) {
      var t = document.createElement("div");
      t.className = "chart-title";
      t.textContent = spec.title;
      el.appendChild(t);
    }
    var grid = document.createElement("div");
    grid.className = "chart-grid";
    grid.style.gridTemplateColumns = "repeat(" + cols + ", 1fr)";
    el.appendChild(grid);
    var lo = Infinity, hi = -Infinity;
    spec.panels.forEach(function (p) { var e = xExtent(p); lo = Math.min(lo, e[0]); hi = Math.max(hi, e[1]); });
    var shared = pad([lo, hi]);
    var cell = Math.floor((width - (cols - 1) * 10) / cols);
    spec.panels.forEach(function (p) {
      var box = document.createElement("div");
      grid.appendChild(box);
      var u = plotXY(box, p, cell, cols > 1, spec.share_x ? shared : pad(xExtent(p)));
      drawn[drawn.length - 1].cols = cols;
      return u;
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("div.chart[data-chart]"), function (el) {
    var spec = specs[Number(el.getAttribute("data-chart"))];
    if (spec) { draw(el, spec); }
  });

  var pending = null;
  window.addEventListener("resize", function () {
    if (pending) { clearTimeout(pending); }
    pending = setTimeout(function () {
      drawn.forEach(function (d) {
        var chart = d.el.closest("div.chart");
        var w = Math.max(240, chart ? chart.clientWidth : d.el.clientWidth);
        d.u.setSize({ width: Math.min(d.most, Math.floor((w - (d.cols - 1) * 10) / d.cols)), height: d.u.height });
      });
    }, 150);
  });
}());
