// The dashboard's charts, drawn with Chart.js from the figures in #dashboard-data.
// Without Chart.js (npm ci not run) the canvases are hidden and the tables carry every figure.
"use strict";
(function () {
  const year = document.querySelector("select[name=year]");
  const part = document.querySelector("select[name=part]");
  if (year && part) {
    // "All time" has no parts; choosing a year enables them again.
    year.addEventListener("change", function () { part.disabled = year.value === "all"; }, true);
  }
  const source = document.getElementById("dashboard-data");
  if (!source) return;
  const data = JSON.parse(source.textContent);
  const boxes = document.querySelectorAll("[data-chart-box]");
  if (typeof window.Chart === "undefined") {
    boxes.forEach(function (box) { box.hidden = true; });
    document.querySelectorAll(".chart-fallback").forEach(function (p) { p.classList.add("shown"); });
    return;
  }
  const css = getComputedStyle(document.documentElement);
  const brand = (css.getPropertyValue("--brand") || "#1f5f8b").trim();
  const muted = (css.getPropertyValue("--muted") || "#5d6b7a").trim();
  const number = new Intl.NumberFormat(document.documentElement.lang || "en", {maximumFractionDigits: 2});
  Chart.defaults.font.family = css.fontFamily;
  Chart.defaults.color = muted;
  Chart.defaults.animation = false;  // figures people compare, not a show
  const tooltip = {callbacks: {label: function (ctx) {
    return (ctx.dataset.label ? ctx.dataset.label + ": " : "") + number.format(ctx.parsed.y ?? ctx.parsed.x ?? ctx.parsed);
  }}};

  const grantees = document.getElementById("chart-grantees");
  if (grantees) {
    const hasTargets = data.grantees.target.some(function (t) { return t !== null; });
    const datasets = [{label: data.labels.actual, data: data.grantees.actual, backgroundColor: brand, borderRadius: 3}];
    if (hasTargets) {
      datasets.push({label: data.labels.target, data: data.grantees.target, backgroundColor: "rgba(138, 90, 0, .25)",
                     borderColor: "#8a5a00", borderWidth: 1, borderRadius: 3});
    }
    const many = data.grantees.labels.length > 8;
    new Chart(grantees, {
      type: "bar",
      data: {labels: data.grantees.labels, datasets: datasets},
      options: {
        indexAxis: many ? "y" : "x", maintainAspectRatio: false,
        plugins: {legend: {display: hasTargets, position: "bottom"}, tooltip: tooltip},
        scales: {x: {beginAtZero: true, ticks: {autoSkip: false, font: {size: 11}}},
                 y: {beginAtZero: true, ticks: {autoSkip: false, font: {size: 11}}}}
      }
    });
    if (many) grantees.parentElement.classList.add("tall");
  }

  const progress = document.getElementById("chart-progress");
  if (progress) {
    const colours = data.progress.values.map(function (v) { return v >= 100 ? "#1e7a46" : brand; });
    new Chart(progress, {
      type: "bar",
      data: {labels: data.progress.labels, datasets: [{label: data.progress.label, data: data.progress.values,
             backgroundColor: colours, borderRadius: 3}]},
      options: {indexAxis: "y", maintainAspectRatio: false,
                plugins: {legend: {display: false}, tooltip: {callbacks: {label: function (ctx) {
                  return number.format(ctx.parsed.x) + " %"; }}}},
                scales: {x: {beginAtZero: true, suggestedMax: 100, ticks: {callback: function (v) { return v + " %"; }}},
                         y: {ticks: {autoSkip: false}}}}
    });
  }

  const trend = document.getElementById("chart-trend");
  if (trend) {
    new Chart(trend, {
      type: "line",
      data: {labels: data.trend.labels, datasets: [{label: data.indicator, data: data.trend.values, borderColor: brand,
             backgroundColor: "rgba(31, 95, 139, .12)", fill: true, cubicInterpolationMode: "monotone", pointRadius: 3}]},
      options: {maintainAspectRatio: false, plugins: {legend: {display: false}, tooltip: tooltip},
                scales: {y: {beginAtZero: true}}}
    });
  }
  window.fieldsyncCharts = Object.keys(Chart.instances || {}).length;
})();
