// Tollgate console glue: charts from the page's JSON (uPlot), the live rate, copy buttons.
// No inline script anywhere: the pages' Content-Security-Policy allows only this file and uPlot.
(function () {
  "use strict";
  var PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563", "#9ca3af"];

  // Axis labels with enough significant digits for tiny spends (0.00012) and big counts (12k).
  function short(v) {
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toPrecision(3) + "M";
    if (a >= 1e3) return (v / 1e3).toPrecision(3) + "k";
    return a >= 1 ? String(Math.round(v * 100) / 100) : v.toPrecision(2);
  }

  function charts() {
    var data = document.getElementById("chart-data");
    if (!data || typeof uPlot === "undefined") return;
    var specs = JSON.parse(data.textContent);
    document.querySelectorAll("[data-chart]").forEach(function (box) {
      var spec = specs[Number(box.getAttribute("data-chart"))];
      var plot = box.querySelector(".plot");
      if (!spec || !plot) return;
      if (!spec.series.length) {
        plot.textContent = "No requests in this range.";
        plot.className = "plot muted";
        return;
      }
      var series = [{}];
      var columns = [spec.x];
      spec.series.forEach(function (s, i) {
        series.push({ label: s.label, stroke: PALETTE[i % PALETTE.length], width: 1.5, points: { show: spec.x.length < 60 } });
        columns.push(s.values);
      });
      var opts = {
        width: Math.max(plot.clientWidth, 300), height: 240, series: series,
        axes: [{}, { label: spec.unit, size: 80, values: function (u, ticks) { return ticks.map(short); } }],
        scales: { x: { time: true } }, legend: { live: true }
      };
      new uPlot(opts, columns, plot);
    });
  }

  function live() {
    var el = document.getElementById("live-rps");
    if (!el) return;
    var src = el.getAttribute("data-src");
    function poll() {
      fetch(src, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (doc) { if (doc && doc.rps !== null) el.textContent = doc.rps.toFixed(1); })
        .catch(function () { el.textContent = "?"; });
    }
    poll();
    setInterval(poll, 2000);
  }

  function copies() {
    document.querySelectorAll("button.copy").forEach(function (b) {
      b.addEventListener("click", function () {
        var text = b.getAttribute("data-copy");
        if (navigator.clipboard) navigator.clipboard.writeText(text).then(function () { b.textContent = "Copied"; }, function () {});
      });
    });
  }

  function autoApply() {
    var form = document.getElementById("filters");
    if (!form) return;
    form.querySelectorAll("select").forEach(function (s) {
      s.addEventListener("change", function () { form.submit(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { charts(); live(); copies(); autoApply(); });
})();
