// /ui/live: one tile per model version, from /ui/api/live polled every 2 s. The API gives
// totals since the start; rates and latency percentiles come from the difference between
// this snapshot and the previous one (the pure functions below, exported to be reasoned
// about and tested on their own).
import { $, api, content, fmt, h, metricName, modelLink, ready, s, setTitle, status,
         withKey } from "./common.js";

const INTERVAL_MS = 2000;
const SPARK_POINTS = 30;
const SPARK_W = 120;
const SPARK_H = 28;

// --- the math: snapshots in, numbers out ----------------------------------------------

// A counter's growth; a smaller value means the process restarted (counted from zero).
export function counterDelta(now, prev) {
  const n = now || 0;
  const p = prev || 0;
  return n >= p ? n - p : n;
}

export function sumStatuses(requests, test = () => true) {
  return Object.entries(requests || {})
    .filter(([code]) => test(Number(code)))
    .reduce((total, [, n]) => total + n, 0);
}

export const isError = (code) => code >= 400;

// Cumulative buckets [[le, n], ...] of the interval: now minus prev, bound by bound (a
// reset anywhere means the whole histogram restarted, so now is the interval).
export function bucketDeltas(now, prev) {
  if (!now) return [];
  const before = new Map((prev || []).map(([le, n]) => [le, n]));
  const deltas = now.map(([le, n]) => [le, n - (before.get(le) || 0)]);
  return deltas.some(([, n]) => n < 0) ? now.map(([le, n]) => [le, n]) : deltas;
}

// Like Prometheus's histogram_quantile: find the bucket holding rank q·total and
// interpolate linearly inside it (from 0 for the first bucket). Returns {value}, or
// {above: last finite bound} when the rank falls in +Inf, or null without observations.
export function histogramQuantile(q, buckets) {
  if (!buckets.length) return null;
  const total = buckets[buckets.length - 1][1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, n] of buckets) {
    if (n >= rank) {
      if (le === null) return { above: lower };
      return { value: lower + (le - lower) * ((rank - below) / (n - below)) };
    }
    if (le !== null) lower = le;
    below = n;
  }
  return { above: lower };
}

// Mean of what a histogram observed in the interval (null when it observed nothing).
export function intervalMean(now, prev) {
  if (!now) return null;
  const count = counterDelta(now.count, prev && prev.count);
  if (!(count > 0)) return null;
  const reset = prev && now.count < prev.count;
  return (reset || !prev ? now.sum : now.sum - prev.sum) / count;
}

// Everything a tile shows about one version, from its entries in two snapshots taken
// `seconds` apart (prev undefined: not there yet, i.e. all zero; seconds null: no
// previous snapshot at all).
export function versionStats(now, prev, seconds) {
  const total = sumStatuses(now.requests);
  const stats = { total, errorsTotal: sumStatuses(now.requests, isError) };
  if (!(seconds > 0)) return { ...stats, interval: false };
  const requests = counterDelta(total, prev ? sumStatuses(prev.requests) : 0);
  const errors = counterDelta(stats.errorsTotal, prev ? sumStatuses(prev.requests, isError) : 0);
  const latency = bucketDeltas(now.latency_s && now.latency_s.buckets,
                               prev && prev.latency_s && prev.latency_s.buckets);
  return {
    ...stats,
    interval: true,
    idle: requests === 0,
    requestsPerSecond: requests / seconds,
    errorsPerSecond: errors / seconds,
    p50: histogramQuantile(0.5, latency),
    p90: histogramQuantile(0.9, latency),
    p99: histogramQuantile(0.99, latency),
    meanBatch: intervalMean(now.batch_rows, prev && prev.batch_rows),
  };
}

export function worstFeature(featurePsi) {
  let worst = null;
  for (const [name, psi] of Object.entries(featurePsi || {})) {
    if (worst === null || psi > worst.psi) worst = { name, psi };
  }
  return worst;
}

// y from the top, highest point at the top edge (a flat line at the bottom when all 0).
export function sparkPoints(values, width = SPARK_W, height = SPARK_H) {
  const top = Math.max(...values, 0) || 1;
  const step = values.length > 1 ? width / (SPARK_POINTS - 1) : 0;
  const start = width - step * (values.length - 1);
  return values.map((v, i) => {
    const x = start + step * i;
    const y = height - 1 - (height - 2) * (v / top);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  }).join(" ");
}

// --- formatting ---------------------------------------------------------------------

const perSecond = (value) => `${fmt(value, 2)}/s`;
const rows = (n) => `${fmt(n, 2)} ${n === 1 ? "row" : "rows"}`;

function ms(quantile) {
  if (quantile === null) return "–";
  if ("above" in quantile) return `> ${fmt(quantile.above * 1000, 2)} ms`;
  return `${fmt(quantile.value * 1000, 2)} ms`;
}

// --- the page -----------------------------------------------------------------------

const tiles = new Map(); // "model/version" -> {section, dl, svg, line, history}
let previous = null; // the last snapshot rendered
let paused = false;
let timer = null;
let inFlight = false;
let generation = 0; // bumped by Pause: a poll in flight then is not rendered

const keyOf = (v) => `${v.model}/${v.version}`;

function tile(v) {
  const key = keyOf(v);
  if (tiles.has(key)) return tiles.get(key);
  const id = `tile-${v.model}-${v.version}`.replace(/[^A-Za-z0-9_-]/g, "_");
  const line = s("polyline", { class: "spark", points: "" });
  const svg = s("svg", { class: "spark-box", width: SPARK_W, height: SPARK_H,
                         viewBox: `0 0 ${SPARK_W} ${SPARK_H}`, role: "img" }, line);
  const dl = h("dl", {});
  const section = h("section", { class: "tile", "aria-labelledby": id, "data-key": key },
    h("h2", { id }, h("a", { href: modelLink(v.model) }, `${v.model} v${v.version}`)),
    svg, dl);
  const t = { section, dl, svg, line, history: [] };
  tiles.set(key, t);
  return t;
}

function row(label, field, ...value) {
  return [h("dt", {}, label), h("dd", { "data-field": field }, ...value)];
}

function driftRows(v) {
  if (v.prediction_psi === undefined && v.feature_psi === undefined && v.drift_rows === undefined) {
    return [];
  }
  const worst = worstFeature(v.feature_psi);
  return [
    ...row("Prediction PSI", "prediction-psi", fmt(v.prediction_psi)),
    ...row("Worst feature PSI", "feature-psi", worst ? `${fmt(worst.psi)} (${worst.name})` : "–"),
    ...row("Drift window", "drift-rows", v.drift_rows === undefined ? "–" : rows(v.drift_rows)),
  ];
}

function accuracyRows(v) {
  if (v.feedback_joined === undefined && v.live_scores === undefined) return [];
  const scores = Object.entries(v.live_scores || {})
    .map(([metric, value]) => `${metricName(metric)} ${fmt(value)}`).join(" · ");
  return [
    ...row("Live scores", "live-scores", scores || "–"),
    ...row("Feedback joined", "feedback-joined", fmt(v.feedback_joined)),
  ];
}

function updateTile(v, stats) {
  const t = tile(v);
  if (stats.interval) {
    t.history.push(stats.requestsPerSecond);
    if (t.history.length > SPARK_POINTS) t.history.shift();
  }
  t.line.setAttribute("points", sparkPoints(t.history));
  t.svg.setAttribute("aria-label", t.history.length
    ? `Requests per second, last ${t.history.length} updates: now ${perSecond(stats.requestsPerSecond)}`
    : "Requests per second: no interval yet");

  const dash = !stats.interval;
  const idle = stats.interval && stats.idle;
  const rate = dash ? "–" : idle ? "idle" : perSecond(stats.requestsPerSecond);
  const errors = dash || idle ? "–" : perSecond(stats.errorsPerSecond);
  const errorClass = !dash && !idle && stats.errorsPerSecond > 0 ? "bad" : null;
  const quantile = (name) => row(`Latency ${name}`, name, dash || idle ? "–" : ms(stats[name]));
  t.dl.replaceChildren(
    ...row("Requests/s", "rate", rate),
    ...row("Errors/s", "errors", h("span", { class: errorClass }, errors)),
    ...row("Total requests", "total", fmt(stats.total),
      stats.errorsTotal ? h("span", { class: "muted" },
        ` (${fmt(stats.errorsTotal)} error${stats.errorsTotal === 1 ? "" : "s"})`) : null),
    ...quantile("p50"), ...quantile("p90"), ...quantile("p99"),
    ...row("Mean batch", "batch",
      dash || idle || stats.meanBatch === null ? "–" : rows(stats.meanBatch)),
    ...row("Queue now", "queue", v.queue_rows === undefined ? "–" : rows(v.queue_rows)),
    ...driftRows(v),
    ...accuracyRows(v));
  return t.section;
}

function render(snap) {
  const before = new Map((previous ? previous.versions : []).map((v) => [keyOf(v), v]));
  const seconds = previous ? snap.time - previous.time : null;
  const sections = snap.versions.map((v) => updateTile(v, versionStats(v, before.get(keyOf(v)), seconds)));
  previous = snap;

  const grid = $("live-tiles");
  const same = grid.children.length === sections.length
    && sections.every((section, i) => grid.children[i] === section);
  if (!same) grid.replaceChildren(...sections); // only when versions come or go: keeps focus
  $("live-empty").hidden = sections.length > 0;

  const at = new Date(snap.time * 1000).toLocaleTimeString();
  status(`Updated ${at}; every ${INTERVAL_MS / 1000} s.`);
  const main = $("main");
  main.dataset.loaded = "true";
  main.dataset.updates = String(Number(main.dataset.updates || 0) + 1);
}

function schedule() {
  if (!paused && !document.hidden && timer === null && !inFlight) {
    timer = setTimeout(poll, INTERVAL_MS);
  }
}

async function poll() {
  timer = null;
  if (paused || document.hidden || inFlight) return;
  inFlight = true;
  const mine = generation;
  try {
    await withKey(async () => {
      const snap = await api("/ui/api/live");
      if (mine === generation) render(snap);
    });
  } finally {
    inFlight = false;
    schedule();
  }
}

function setPaused(value, button) {
  paused = value;
  button.setAttribute("aria-pressed", String(value));
  button.textContent = value ? "Resume" : "Pause";
  if (value) {
    generation += 1;
    clearTimeout(timer);
    timer = null;
    const at = previous ? new Date(previous.time * 1000).toLocaleTimeString() : "none yet";
    status(`Paused; last update ${at}.`);
  } else {
    poll();
  }
}

setTitle("Live");
// The status line is a clock here: read out on every tick it would drown everything else.
$("status").setAttribute("aria-live", "off");
const pause = h("button", { type: "button", class: "secondary", "aria-pressed": "false",
                            onclick: () => setPaused(!paused, pause) }, "Pause");
content(
  h("div", { class: "live-controls" }, pause,
    h("span", { class: "muted" }, "Rates and latency over the last interval; totals since the start.")),
  h("p", { id: "live-empty", class: "muted", hidden: true }, "No model version has metrics yet."),
  h("div", { id: "live-tiles", class: "tiles" }));

document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    clearTimeout(timer);
    timer = null;
  } else if (!paused && !inFlight && timer === null) {
    poll();
  }
});

await ready();
await poll();
