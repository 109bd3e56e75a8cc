// What every console page shares: building elements, the API key, calls, formatting, bars.
// Data is only ever placed with textContent/attributes, never parsed as HTML (the model
// card comes already sanitised by the server and is the one exception).

const KEY = "modelserve.key";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElementNS(
    tag === "svg" || attrs.svg ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "svg" || value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "text") el.textContent = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function s(tag, attrs = {}, ...children) {
  return h(tag, { ...attrs, svg: true }, ...children);
}

export const $ = (id) => document.getElementById(id);

export function status(text, error = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", error);
}

export function setTitle(text) {
  $("title").textContent = text;
  document.title = `${text} · modelserve`;
}

export function content(...children) {
  $("content").replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

// --- the API key (per tab: sessionStorage, gone when the tab closes; never in a URL) ---

export function key() {
  return sessionStorage.getItem(KEY) || "";
}

let config = null;
let keyWaiters = [];

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function api(path, { method = "GET", body, headers = {}, as = "json" } = {}) {
  const all = { ...headers };
  if (key()) all.Authorization = `Bearer ${key()}`;
  const response = await fetch(path, { method, body, headers: all, cache: "no-store" });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const data = await response.json();
      if (data && data.error) message = data.error;
    } catch (_) { /* not JSON */ }
    if (response.status === 401) {
      sessionStorage.removeItem(KEY);
      renderKeyBox(`The key was not accepted: ${message}`);
    }
    throw new ApiError(response.status, message);
  }
  if (as === "blob") return response.blob();
  if (as === "text") return response.text();
  return response.json();
}

function renderKeyBox(problem = "") {
  const box = $("key-box");
  if (!config || !(config.api_keys || config.admin_keys)) {
    box.replaceChildren();
    return;
  }
  if (key()) {
    box.replaceChildren(
      h("span", { text: "API key set for this tab" }),
      h("button", { type: "button", class: "secondary", onclick: () => {
        sessionStorage.removeItem(KEY);
        renderKeyBox();
        status("Key forgotten. Enter a key to see the models.");
      } }, "Forget key"));
    return;
  }
  const input = h("input", { id: "api-key", type: "password", autocomplete: "off",
                             required: true, "aria-describedby": problem ? "key-problem" : null });
  const form = h("form", { class: "key-box-form", onsubmit: (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    sessionStorage.setItem(KEY, value);
    renderKeyBox();
    const waiters = keyWaiters;
    keyWaiters = [];
    waiters.forEach((resolve) => resolve());
  } },
  h("label", { for: "api-key" }, "API key"), " ", input, " ",
  h("button", { type: "submit" }, "Use key"));
  box.replaceChildren(form);
  if (problem) box.append(h("span", { id: "key-problem", role: "alert", text: problem }));
}

// The service's console config; asks for a key first when keys are on and none is set.
export async function ready() {
  config = await (await fetch("/ui/api/config", { cache: "no-store" })).json();
  renderKeyBox();
  if (config.api_keys && !key()) {
    status("This server needs an API key: enter it above (it stays in this tab only).");
    $("api-key").focus();
    await new Promise((resolve) => keyWaiters.push(resolve));
    status("Loading…");
  }
  return config;
}

// Run ``load`` now and again whenever a new key is entered (after a refusal).
export async function withKey(load) {
  const run = async () => {
    try {
      await load();
    } catch (error) {
      status(error.message, true);
      if (error instanceof ApiError && error.status === 401) {
        await new Promise((resolve) => keyWaiters.push(resolve));
        return run();
      }
    }
  };
  return run();
}

// --- formatting -------------------------------------------------------------------

export function fmt(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e9) return value.toLocaleString("en");
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(2);
  return Number(value.toPrecision(digits + 1)).toLocaleString("en", { maximumFractionDigits: 6 });
}

export function metricName(name) {
  return { r2: "R²", mae: "MAE", mse: "MSE", rmse: "RMSE", roc_auc: "ROC AUC",
           roc_auc_ovr_macro: "ROC AUC (macro)", f1: "F1", macro_f1: "macro F1",
           log_loss: "log loss", balanced_accuracy: "balanced accuracy" }[name] || name;
}

export function ago(seconds) {
  if (!seconds) return "";
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

// Horizontal bars for probabilities in [0, 1], with the numbers as text: the chart reads
// without colour or sight (role="img" with a full-text label).
export function bars(items, { width = 320 } = {}) {
  const row = 22;
  const labelWidth = Math.min(120, 12 + 8 * Math.max(...items.map((i) => String(i.label).length)));
  const barWidth = width - labelWidth - 60;
  const best = Math.max(...items.map((i) => i.value));
  const summary = items.map((i) => `${i.label}: ${(i.value * 100).toFixed(1)}%`).join(", ");
  const svg = s("svg", { class: "bars", width, height: items.length * row + 4,
                         viewBox: `0 0 ${width} ${items.length * row + 4}`, role: "img",
                         "aria-label": `Probabilities: ${summary}` });
  items.forEach((item, i) => {
    const y = i * row + 2;
    svg.append(
      s("text", { x: labelWidth - 6, y: y + 15, "text-anchor": "end" }, String(item.label)),
      s("rect", { class: "track", x: labelWidth, y: y + 3, width: barWidth, height: row - 8 }),
      s("rect", { class: item.value === best ? "bar top" : "bar", x: labelWidth, y: y + 3,
                  width: Math.max(1, barWidth * item.value), height: row - 8 }),
      s("text", { x: labelWidth + barWidth + 6, y: y + 15 }, `${(item.value * 100).toFixed(1)}%`));
  });
  return svg;
}

export function modelLink(name) {
  return `/ui/models/${encodeURIComponent(name)}`;
}
