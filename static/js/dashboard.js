// AURA dashboards: draws the charts described by the page's "dashboard-data" island with Chart.js.
// Colours come from the theme's CSS variables (charts are redrawn when the theme changes); labels
// come from the server in the user's language; numbers are formatted for the page's language.
(function () {
  "use strict";

  var drawn = [];

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue("--" + name).trim();
  }

  function alpha(color, opacity) {
    var match = /^#([0-9a-f]{6})$/i.exec(color);
    if (!match) { return color; }
    var n = parseInt(match[1], 16);
    return "rgba(" + ((n >> 16) & 255) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + opacity + ")";
  }

  function formats(unit, locale) {
    var short, full;
    if (unit === "usd") {
      // Significant digits, not fraction digits: an axis of tiny amounts must not read $0 throughout.
      short = new Intl.NumberFormat(locale, { style: "currency", currency: "USD", notation: "compact", maximumSignificantDigits: 3 });
      full = new Intl.NumberFormat(locale, { style: "currency", currency: "USD", minimumFractionDigits: 2, maximumFractionDigits: 6 });
    } else if (unit === "percent") {
      short = full = new Intl.NumberFormat(locale, { style: "percent", maximumFractionDigits: 1 });
    } else if (unit === "ms") {
      short = full = new Intl.NumberFormat(locale, { style: "unit", unit: "millisecond", maximumFractionDigits: 0 });
    } else {
      short = new Intl.NumberFormat(locale, { notation: "compact", maximumFractionDigits: 1 });
      full = new Intl.NumberFormat(locale, { maximumFractionDigits: 0 });
    }
    return {
      short: function (value) { return short.format(value); },
      full: function (value) { return value === null || value === undefined ? "—" : full.format(value); }
    };
  }

  function dataset(spec, series) {
    var color = css(series.color);
    var line = spec.type === "line" || series.line;
    var out = {
      label: series.label,
      data: series.data,
      borderColor: color,
      backgroundColor: line ? color : alpha(color, 0.8),
      borderWidth: 2,
      pointRadius: spec.labels.length > 48 ? 0 : 2,
      tension: 0.2,
      // Rates and latencies have no value in an hour without calls: join the points around it.
      spanGaps: spec.unit === "percent" || spec.unit === "ms",
      order: series.line ? 0 : 1
    };
    if (series.line) { out.type = "line"; }
    if (series.stack) { out.stack = series.stack; }
    if (series.fill) {
      out.fill = series.fill;
      out.backgroundColor = alpha(css(series.fillColor || series.color), 0.2);
    }
    return out;
  }

  function draw(spec, locale) {
    var canvas = document.getElementById("chart-" + spec.id);
    if (!canvas) { return; }
    var format = formats(spec.unit, locale);
    var text = css("text"), muted = css("muted"), grid = alpha(css("border") || "#888888", 0.7);
    var stacked = spec.datasets.some(function (series) { return series.stack; });
    var valueAxis = { beginAtZero: true, stacked: stacked, grid: { color: grid }, border: { color: grid },
      ticks: { color: muted, callback: function (value) { return format.short(value); } } };
    var labelAxis = { stacked: stacked, grid: { display: false }, border: { color: grid },
      ticks: { color: muted, autoSkip: true, autoSkipPadding: 16, maxRotation: 0 } };
    var reduced = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    drawn.push(new window.Chart(canvas, {
      type: spec.type,
      data: { labels: spec.labels, datasets: spec.datasets.map(function (series) { return dataset(spec, series); }) },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: reduced ? false : { duration: 250 },
        indexAxis: spec.horizontal ? "y" : "x",
        interaction: { mode: "index", intersect: false },
        scales: spec.horizontal ? { x: valueAxis, y: labelAxis } : { x: labelAxis, y: valueAxis },
        plugins: {
          legend: { display: spec.datasets.length > 1, labels: { color: text, boxWidth: 12 } },
          tooltip: {
            callbacks: {
              label: function (item) {
                return item.dataset.label + ": " + format.full(spec.horizontal ? item.parsed.x : item.parsed.y);
              }
            }
          }
        }
      }
    }));
  }

  function drawAll(data, locale) {
    drawn.forEach(function (chart) { chart.destroy(); });
    drawn = [];
    window.Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    window.Chart.defaults.color = css("muted");
    data.charts.forEach(function (spec) { draw(spec, locale); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var island = document.getElementById("dashboard-data");
    if (!island || typeof window.Chart === "undefined") { return; }
    var data = JSON.parse(island.textContent);
    var locale = document.documentElement.lang || "en";
    drawAll(data, locale);
    // The header's theme toggle flips data-theme: redraw with the other theme's colours.
    new MutationObserver(function () { drawAll(data, locale); })
      .observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
  });
})();
