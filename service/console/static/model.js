// /ui/models/{name}[?version=N]: the model card with its plots, the input schema, metrics,
// provenance, and a try-it form built from the manifest, with the request as curl and
// tritonclient snippets.
import { $, ApiError, api, bars, content, fmt, h, key, metricName, ready, setTitle,
         status, withKey } from "./common.js";

const name = decodeURIComponent(location.pathname.split("/").pop());
const wanted = new URLSearchParams(location.search).get("version");
let answered = 0;

function versionPicker(entry, version) {
  const served = entry.versions.filter((v) => v.state === "AVAILABLE");
  if (served.length < 2) return null;
  const select = h("select", { id: "version", onchange: () => {
    location.search = `?version=${encodeURIComponent(select.value)}`;
  } }, served.map((v) => h("option", { value: v.version, selected: v.version === version },
    `v${v.version}${v.headline ? ` · ${metricName(v.headline.metric)} ${fmt(v.headline.value)}` : ""}`)));
  return h("p", {}, h("label", { for: "version" }, "Version "), select);
}

function metricsTable(evaluation) {
  const names = Object.keys(evaluation.test_metrics);
  const rows = [["this model (held-out test)", evaluation.test_metrics]];
  for (const [label, values] of Object.entries(evaluation.baselines || {})) rows.push([label, values]);
  if (evaluation.cv_metrics && Object.keys(evaluation.cv_metrics).length) {
    rows.push(["cross-validation mean", evaluation.cv_metrics]);
  }
  return h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Table (scrolls sideways)" }, h("table", {},
    h("caption", { class: "visually-hidden" }, "Test metrics"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, ""),
      names.map((n) => h("th", { scope: "col", class: "num" }, metricName(n))))),
    h("tbody", {}, rows.map(([label, values]) => h("tr", {},
      h("th", { scope: "row" }, label),
      names.map((n) => h("td", { class: "num" }, fmt(values[n]))))))));
}

function schemaTable(input) {
  if (input.kind === "image") {
    const im = input.image || {};
    return h("p", {}, `${input.name}: an image, shape [${input.shape.join(", ")}]`,
      im.height ? `, ${im.width}×${im.height} pixels, ${im.channels} channel(s), values ` +
        `${im.value_min}–${im.value_max}` : "", ".");
  }
  return h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Table (scrolls sideways)" }, h("table", {},
    h("caption", { class: "visually-hidden" }, "Input features"),
    h("thead", {}, h("tr", {}, ["Feature", "Unit", "Training range", "Description"]
      .map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, (input.features || []).map((f) => h("tr", {},
      h("th", { scope: "row" }, f.name),
      h("td", {}, f.unit || ""),
      h("td", { class: "num" }, f.min !== undefined && f.min !== null
        ? `${fmt(f.min)} – ${fmt(f.max)}` : (f.categories ? f.categories.join(", ") : "")),
      h("td", {}, f.description || ""))))));
}

function provenance(meta) {
  const p = meta.provenance || {};
  const items = [
    ["Framework", `${meta.framework} ${meta.framework_version}`],
    ["Created", meta.created_at],
    ["Trained by", p.command || p.trainer],
    ["Training time", p.training_seconds ? `${fmt(p.training_seconds)} s` : null],
    ["Git commit", p.git_commit],
    ["Libraries", Object.entries(p.library_versions || {}).map(([k, v]) => `${k} ${v}`).join(", ")],
    ["Data", (meta.evaluation.datasets || []).map((d) => `${d.path} (sha256 ${d.sha256.slice(0, 12)}…)`).join("; ")],
    ["Evaluation", meta.evaluation.method],
    ["Served by", meta.serving ? `${meta.serving.engine}: ${meta.serving.engine_detail}` : null],
  ].filter(([, v]) => v);
  return h("dl", { class: "facts" }, items.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

async function showCard(version) {
  const box = h("div", { class: "card-body" }, h("p", { class: "muted" }, "Loading the model card…"));
  api(`/ui/api/models/${encodeURIComponent(name)}/versions/${version}/card`).then(async (card) => {
    // Rendered by the server from Markdown with raw HTML off (service/console/card.py).
    box.innerHTML = card.html;
    // Wide tables and code scroll sideways on a phone: reachable with the keyboard.
    for (const pre of box.querySelectorAll("pre")) pre.tabIndex = 0;
    for (const table of box.querySelectorAll("table")) {
      const wrap = h("div", { class: "table-wrap", tabindex: 0, role: "region",
                              "aria-label": "Table (scrolls sideways)" });
      table.replaceWith(wrap);
      wrap.append(table);
    }
    for (const img of box.querySelectorAll("img[data-file]")) {
      const blob = await api(`/ui/api/models/${encodeURIComponent(name)}/versions/${version}/files/${encodeURIComponent(img.dataset.file)}`, { as: "blob" });
      img.src = URL.createObjectURL(blob);
    }
  }).catch((error) => {
    box.replaceChildren(h("p", { class: "muted" }, error instanceof ApiError && error.status === 404
      ? "This version has no model card." : `The model card could not be loaded: ${error.message}`));
  });
  return box;
}

// --- try it ---------------------------------------------------------------------------

function rangeProblem(f, raw) {
  if (raw.trim() === "") return f.nullable ? "" : "A value is needed.";
  const value = Number(raw);
  if (!Number.isFinite(value)) return "Not a number.";
  if (f.min !== undefined && f.min !== null && (value < f.min || value > f.max)) {
    return `Outside the training range ${fmt(f.min)} – ${fmt(f.max)}: the model never saw such values.`;
  }
  return "";
}

function field(f, value, index) {
  const id = `f-${index}`;
  const hint = [f.unit, f.min !== undefined && f.min !== null ? `trained on ${fmt(f.min)} – ${fmt(f.max)}` : ""]
    .filter(Boolean).join("; ");
  const problem = h("div", { class: "problem", id: `${id}-problem`, "aria-live": "polite" });
  const input = h("input", { id, name: f.name, type: "text", inputmode: "decimal",
                             value: value === null || value === undefined ? "" : String(value),
                             "aria-describedby": `${id}-hint ${id}-problem`, autocomplete: "off" });
  const check = () => {
    const text = rangeProblem(f, input.value);
    problem.textContent = text;
    input.setAttribute("aria-invalid", text ? "true" : "false");
  };
  input.addEventListener("input", check);
  check();
  return h("div", { class: "field" },
    h("label", { for: id }, f.name), input,
    h("span", { class: "hint", id: `${id}-hint` }, hint),
    problem);
}

function snippets(meta, v2, version, instance) {
  const url = `${location.origin}/v1/models/${name}/versions/${version}:predict`;
  const body = JSON.stringify({ instances: [instance] });
  const auth = key() ? ` \\\n  -H "Authorization: Bearer $MODELSERVE_KEY"` : "";
  const curl = `curl -s ${url}${auth} \\\n  -H "Content-Type: application/json" \\\n  -d '${body.replaceAll("'", "'\\''")}'`;
  const input = v2.inputs[0];
  const features = meta.inputs[0].features.map((f) => f.name);
  const row = features.map((f) => (instance[f] === null ? "float('nan')" : String(instance[f])));
  const dtype = { FP64: "float64", FP32: "float32" }[input.datatype] || "float64";
  const headers = auth ? ', headers={"Authorization": f"Bearer {os.environ[\'MODELSERVE_KEY\']}"}' : "";
  const python = [
    "# pip install tritonclient[http] numpy",
    ...(auth ? ["import os", ""] : []),
    "import numpy as np",
    "import tritonclient.http as httpclient",
    "",
    `client = httpclient.InferenceServerClient("${location.host}")`,
    `x = np.array([[${row.join(", ")}]], dtype=np.${dtype})`,
    `inp = httpclient.InferInput("${input.name}", list(x.shape), "${input.datatype}")`,
    "inp.set_data_from_numpy(x)",
    `result = client.infer("${name}", [inp], model_version="${version}"${headers})`,
    ...v2.outputs.map((o) => `print("${o.name}", result.as_numpy("${o.name}"))`),
  ].join("\n");
  return h("details", { class: "snippets" }, h("summary", {}, "The same request from code"),
    h("h3", {}, "curl (TF-Serving REST)"), h("pre", { tabindex: 0 }, h("code", { "data-snippet": "curl" }, curl)),
    h("h3", {}, "Python (tritonclient, KServe V2)"), h("pre", { tabindex: 0 }, h("code", { "data-snippet": "python" }, python)));
}

function answerView(meta, entryVersion, prediction) {
  if (meta.task === "classification") {
    const p = prediction.probabilities;
    const items = meta.labels.map((label, i) => ({ label, value: p[i] }));
    return h("div", {},
      h("p", { class: "answer" }, "Answer: ", h("strong", { "data-answer": prediction.label }, String(prediction.label)),
        ` (p = ${fmt(p[prediction.class_id])})`),
      bars(items));
  }
  const value = typeof prediction === "number" ? prediction : prediction.value;
  const unit = meta.target && meta.target.unit ? ` ${meta.target.unit}` : "";
  const deciles = entryVersion.prediction_deciles;
  const context = deciles
    ? `On its training data, 80% of this model's predictions lay between ${fmt(deciles[0])} and ` +
      `${fmt(deciles[deciles.length - 1])}${unit} (median ${fmt(deciles[Math.floor(deciles.length / 2)])}).`
    : "";
  return h("div", {},
    h("p", { class: "answer" }, `${meta.target ? meta.target.name : "Value"}: `,
      h("strong", { "data-answer": value }, fmt(value, 4)), unit ? ` (in ${unit.trim()})` : ""),
    context ? h("p", { class: "muted" }, context) : null);
}

function tryIt(meta, v2, entryVersion, version) {
  const input = meta.inputs[0];
  if (input.kind === "image") {
    return h("p", {}, "This model takes an image: ",
      h("a", { href: `/ui/draw/${encodeURIComponent(name)}` }, "draw a digit or upload a picture"), ".");
  }
  if (!input.features || !input.features.length) {
    return h("p", { class: "muted" }, "This model's input has no named features to fill in.");
  }
  const example = (meta.example && meta.example.instances && meta.example.instances[0]) || {};
  // Samples are stored as float32 widened to float64 (6.099999904632568): shown rounded.
  const shown = (v) => (typeof v === "number" ? Number(v.toPrecision(7)) : v);
  const fields = input.features.map((f, i) => field(f, shown(example[f.name]), i));
  const out = h("div", { id: "answer", "aria-live": "polite" });
  const form = h("form", { id: "try-form", novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    const instance = {};
    for (const [i, f] of input.features.entries()) {
      const raw = $(`f-${i}`).value.trim();
      if (raw === "" && !f.nullable) {
        status(`${f.name}: a value is needed.`, true);
        $(`f-${i}`).focus();
        return;
      }
      if (raw !== "" && !Number.isFinite(Number(raw))) {
        status(`${f.name}: "${raw}" is not a number.`, true);
        $(`f-${i}`).focus();
        return;
      }
      instance[f.name] = raw === "" ? null : Number(raw);
    }
    try {
      const answer = await api(`/v1/models/${encodeURIComponent(name)}/versions/${version}:predict`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ instances: [instance] }) });
      out.replaceChildren(answerView(meta, entryVersion, answer.predictions[0]),
        answer.warnings ? h("ul", { class: "warnings" }, answer.warnings.map((w) =>
          h("li", {}, typeof w === "string" ? w : w.message))) : null,
        snippets(meta, v2, version, instance));
      answered += 1;
      out.dataset.answered = String(answered);
      status(`Answered by v${version}.`);
    } catch (error) {
      status(error.message, true);
    }
  } },
  h("fieldset", {}, h("legend", {}, "Input (prefilled with the model's sample)"), fields),
  h("p", {}, h("button", { type: "submit" }, "Predict")));
  return h("div", {}, form, out);
}

async function load() {
  const catalog = await api("/ui/api/catalog");
  const entry = catalog.models.find((m) => m.name === name);
  if (!entry) {
    setTitle(name);
    status(`There is no model named "${name}" on this server.`, true);
    content(h("p", {}, h("a", { href: "/ui" }, "See every model")));
    return;
  }
  const served = entry.versions.filter((v) => v.state === "AVAILABLE");
  if (!served.length) {
    setTitle(name);
    status(`${name} has no version being served right now.`, true);
    content(h("p", {}, h("a", { href: "/ui" }, "See every model and why")));
    return;
  }
  const chosen = served.find((v) => String(v.version) === wanted) || served[0];
  const version = chosen.version;
  const [meta, v2] = await Promise.all([
    api(`/v1/models/${encodeURIComponent(name)}/versions/${version}/metadata`),
    api(`/v2/models/${encodeURIComponent(name)}/versions/${version}`)]);
  const m = meta.modelserve;
  setTitle(`${name} v${version}`);
  const card = await showCard(version);
  content(
    h("p", {}, m.description),
    versionPicker(entry, version),
    h("section", { "aria-labelledby": "h-try" }, h("h2", { id: "h-try" }, "Try it"),
      tryIt(m, v2, chosen, version)),
    h("section", { "aria-labelledby": "h-quality" }, h("h2", { id: "h-quality" }, "Quality"),
      metricsTable(m.evaluation),
      m.labels ? h("p", {}, "Labels: ", m.labels.map((l) => h("span", { class: "tag" }, l))) : null),
    h("section", { "aria-labelledby": "h-input" }, h("h2", { id: "h-input" }, "Input"),
      m.inputs.map(schemaTable)),
    h("section", { "aria-labelledby": "h-prov" }, h("h2", { id: "h-prov" }, "Provenance"),
      provenance({ ...m, serving: m.serving })),
    h("section", { "aria-labelledby": "h-card" }, h("h2", { id: "h-card" }, "Model card"), card));
  status(`Serving v${version} on ${m.serving.engine}.`);
}

await ready();
await withKey(load);
$("main").dataset.loaded = "true";
