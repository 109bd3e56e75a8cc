// /ui: every model with its versions, states and reasons, routing, engine, load time and
// headline quality; admin actions (load, unload, reload) when admin keys are configured.
import { $, ApiError, ago, api, content, fmt, h, metricName, modelLink, ready, status,
         withKey } from "./common.js";

let config = null;

function stateCell(v) {
  return h("td", {},
    h("span", { class: `state ${v.state}` }, v.state === "END" && v.failed ? "FAILED" : v.state),
    v.reason ? h("div", { class: "muted" }, v.reason) : null);
}

function versionRow(model, v) {
  const head = v.headline;
  const labels = Object.entries(model.routing.labels || {})
    .filter(([, version]) => Number(version) === v.version).map(([label]) => label);
  const traffic = (model.routing.traffic_now || {})[String(v.version)];
  return h("tr", {},
    h("th", { scope: "row" }, `v${v.version}`,
      labels.map((l) => h("span", { class: "tag", title: "label" }, l))),
    stateCell(v),
    h("td", {}, v.serving ? v.serving.engine : "–"),
    h("td", { class: "num" }, v.load_seconds ? `${fmt(v.load_seconds, 2)} s` : "–",
      v.loaded_at ? h("div", { class: "muted" }, ago(v.loaded_at)) : null),
    h("td", { class: "num" }, head ? `${metricName(head.metric)} ${fmt(head.value)}` : "–"),
    h("td", { class: "num" }, traffic === undefined ? "–" : `${Math.round(traffic * 100)}%`));
}

function evidenceTags(model) {
  const e = model.evidence || {};
  const tags = [];
  if (e.shadow && e.shadow.enabled) {
    tags.push(`shadow: ${e.shadow.percent}% of requests also sent to ${e.shadow.version}`);
  }
  if (e.payload_log && e.payload_log.enabled) tags.push("payload log on");
  if (e.drift && e.drift.enabled) tags.push("drift on");
  if (e.feedback && e.feedback.enabled) tags.push("feedback on");
  return tags.map((t) => h("span", { class: "tag" }, t));
}

function confirmThen(question, action) {
  const dialog = h("dialog", { "aria-labelledby": "confirm-text" },
    h("p", { id: "confirm-text" }, question),
    h("form", { method: "dialog", class: "actions" },
      h("button", { value: "cancel", class: "secondary" }, "Cancel"), " ",
      h("button", { value: "ok", class: "danger" }, "Confirm")));
  document.body.append(dialog);
  dialog.addEventListener("close", async () => {
    dialog.remove();
    if (dialog.returnValue === "ok") await action();
  });
  dialog.showModal();
}

async function admin(path, done) {
  try {
    await api(path, { method: "POST", body: "{}", headers: { "Content-Type": "application/json" } });
    await load();
    status(done);
  } catch (error) {
    const message = error instanceof ApiError && error.status === 403
      ? "That needs an admin key: forget this key and enter an admin key." : error.message;
    status(message, true);
  }
}

function adminButtons(model) {
  if (!config.admin_keys) return null;
  return h("div", { class: "actions" },
    h("button", { type: "button", class: "secondary", onclick: () => confirmThen(
      `Load ${model.name} again (re-scan its folder and serve it)?`,
      () => admin(`/v2/repository/models/${encodeURIComponent(model.name)}/load`,
                  `${model.name}: loaded.`)) }, `Load ${model.name}`),
    h("button", { type: "button", class: "danger", onclick: () => confirmThen(
      `Unload ${model.name}? It stops answering until it is loaded again.`,
      () => admin(`/v2/repository/models/${encodeURIComponent(model.name)}/unload`,
                  `${model.name}: unloaded.`)) }, `Unload ${model.name}`));
}

function modelCard(model) {
  const link = modelLink(model.name);
  return h("section", { class: "model", "aria-labelledby": `m-${model.name}` },
    h("h2", { id: `m-${model.name}` }, h("a", { href: link }, model.name)),
    h("p", {}, model.description || h("span", { class: "muted" }, "No version loaded.")),
    h("p", {},
      h("span", { class: model.ready ? "state AVAILABLE" : "state END" },
        model.ready ? "Ready" : "Not ready"),
      model.task ? ` · ${model.task}` : "",
      ` · policy ${model.routing.version_policy}`),
    h("div", {}, evidenceTags(model)),
    h("div", { class: "actions" },
      h("a", { class: "button", href: link }, "Card and try it"),
      model.input_kind === "image"
        ? h("a", { class: "button secondary", href: `/ui/draw/${encodeURIComponent(model.name)}` },
          "Draw a digit") : null),
    h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Table (scrolls sideways)" },
      h("table", {},
        h("caption", { class: "visually-hidden" }, `Versions of ${model.name}`),
        h("thead", {}, h("tr", {},
          ["Version", "State", "Engine", "Load time", "Test score", "Traffic"].map((t, i) =>
            h("th", { scope: "col", class: i >= 3 ? "num" : null }, t)))),
        h("tbody", {}, model.versions.map((v) => versionRow(model, v))))),
    adminButtons(model));
}

async function load() {
  const data = await api("/ui/api/catalog");
  const models = data.models;
  const top = config.admin_keys
    ? h("p", {}, h("button", { type: "button", class: "secondary", onclick: () => confirmThen(
        "Re-scan the whole repository now?", () => admin("/admin/reload", "Repository re-scanned.")) },
      "Reload repository")) : null;
  content(top, h("div", { class: "cards" }, models.map(modelCard)));
  const ready = models.filter((m) => m.ready).length;
  status(`${models.length} models, ${ready} ready.`);
}

config = await ready();
await withKey(load);
$("main").dataset.loaded = "true";
