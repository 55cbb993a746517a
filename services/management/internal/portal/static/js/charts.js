// charts.js: time-series charts drawn with uPlot (vendor/uplot, pinned, loaded on first use).
// Every chart is a <figure> that carries the data it draws: data-chart names it and
// data-totals holds each series' sum as JSON, so tests and scripts read what the chart shows;
// a table beside it gives the same totals to keyboard and screen-reader users.

import { h, replace } from './dom.js';

const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563', '#65a30d', '#9333ea'];

let loading = null;

// loadUPlot adds uPlot's script and style sheet to the page once and resolves to uPlot.
export function loadUPlot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      document.head.append(h('link', { rel: 'stylesheet', href: 'vendor/uplot/uPlot.min.css' }));
      document.head.append(h('script', {
        src: 'vendor/uplot/uPlot.iife.min.js',
        onload: () => resolve(window.uPlot),
        onerror: () => { loading = null; reject(new Error('the chart library did not load')); },
      }));
    });
  }
  return loading;
}

// timeChart draws series over times (Unix seconds) into a new figure and returns it with a
// destroy function: {el, destroy}. series: [{label, values}], one value per time.
export async function timeChart(name, title, times, series, unit) {
  const uPlot = await loadUPlot();
  const totals = {};
  for (const s of series) totals[s.label] = s.values.reduce((a, b) => a + b, 0);
  const plot = h('div', { class: 'chart-plot', role: 'img', 'aria-label': `${title}: ${describe(totals, unit)}` });
  const el = h('figure', { class: 'chart', dataset: { chart: name, totals: JSON.stringify(totals), points: String(times.length) } },
    h('figcaption', null, title),
    plot,
    h('details', { class: 'chart-data' }, h('summary', null, 'Totals'),
      h('table', null, h('tbody', null, Object.entries(totals).map(([k, v]) => h('tr', null, h('th', { scope: 'row' }, k), h('td', null, fmt(v, unit))))))));
  const opts = {
    width: 600,
    height: 220,
    scales: { x: { time: true } },
    legend: { live: false },
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2, points: { show: times.length < 3 } }))],
    axes: [{}, { size: 60, values: (u, vals) => vals.map((v) => fmt(v, unit)) }],
  };
  const u = new uPlot(opts, [times, ...series.map((s) => s.values)], plot);
  const fit = () => u.setSize({ width: Math.max(plot.clientWidth, 200), height: 220 });
  const observer = new ResizeObserver(fit);
  observer.observe(plot);
  return { el, destroy: () => { observer.disconnect(); u.destroy(); } };
}

function describe(totals, unit) {
  return Object.entries(totals).map(([k, v]) => `${k} ${fmt(v, unit)}`).join(', ') || 'no data';
}

// fmt renders n for people: bytes with binary prefixes, seconds with one decimal, counts as is.
export function fmt(n, unit) {
  if (unit === 'bytes') {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let v = n;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return `${i ? v.toFixed(1) : v} ${units[i]}`;
  }
  if (unit === 's') return `${Math.round(n * 10) / 10} s`;
  return String(Math.round(n * 100) / 100);
}

// chartGrid replaces slot with figures, destroying the charts it held before; it returns the
// destroy function of the new ones.
export function chartGrid(slot, charts) {
  replace(slot, h('div', { class: 'chart-grid' }, charts.map((c) => c.el)));
  return () => charts.forEach((c) => c.destroy());
}
