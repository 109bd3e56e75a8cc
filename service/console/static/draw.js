// /ui/draw/{name}: a drawing pad and an upload box for an image model; each picture is
// posted to :predict_image?return_input=1 and the answer shows the model's own 28x28 input,
// the label and the probabilities. Test hooks: main[data-loaded] once the pad is usable,
// #content[data-answered] counts the answers shown.
import { $, api, content, h, modelLink, bars, fmt, ready, setTitle, status,
         withKey } from "./common.js";

const SIZE = 280; // the pad's own pixels, whatever its CSS size
const BRUSH = 18;
const DEBOUNCE_MS = 300;

const name = decodeURIComponent(location.pathname.replace(/^\/ui\/draw\//, ""));
const predictPath = `/v1/models/${encodeURIComponent(name)}:predict_image?return_input=1`;

let meta = null;
let answered = 0;
// Every new picture bumps this; an answer for an older one is dropped on arrival.
let latest = 0;

function links() {
  return h("p", { class: "draw-links" },
    h("a", { href: modelLink(name) }, `← ${name}: the model's page`), " · ",
    h("a", { href: "/ui" }, "All models"));
}

function makePad(onStrokeEnd) {
  const canvas = h("canvas", { class: "pad", width: SIZE, height: SIZE, role: "img",
                               "aria-label": "Drawing pad: draw one digit here",
                               "aria-describedby": "pad-hint" });
  const ctx = canvas.getContext("2d");
  let drawn = false;
  let pointer = null; // the one pointer drawing now; other fingers are ignored
  let last = null;

  const clear = () => {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, SIZE, SIZE);
    drawn = false;
  };
  // Scaled by the CSS size, so the pad draws where the pointer is at any width.
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left - canvas.clientLeft) * SIZE / canvas.clientWidth,
            (event.clientY - box.top - canvas.clientTop) * SIZE / canvas.clientHeight];
  };
  const segment = (from, to) => {
    ctx.strokeStyle = "#000";
    ctx.lineWidth = BRUSH;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(...from);
    ctx.lineTo(...to);
    ctx.stroke();
  };

  canvas.addEventListener("pointerdown", (event) => {
    if (pointer !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    pointer = event.pointerId;
    canvas.setPointerCapture(pointer);
    latest += 1; // the picture changes: any answer on its way is stale
    last = at(event);
    segment(last, last); // a tap leaves a dot
    drawn = true;
  });
  canvas.addEventListener("pointermove", (event) => {
    if (event.pointerId !== pointer) return;
    const moves = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const move of moves.length ? moves : [event]) {
      const point = at(move);
      segment(last, point);
      last = point;
    }
  });
  const end = (event) => {
    if (event.pointerId !== pointer) return;
    pointer = null;
    onStrokeEnd();
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  clear();
  return { canvas, clear, drawn: () => drawn };
}

// The model's input as gray pixels: value_min black, value_max white (as the model sees it).
function drawSeen(canvas, input) {
  const spec = meta.image || {};
  const lo = spec.value_min ?? 0;
  const hi = spec.value_max ?? 255;
  const rows = input.length;
  const cols = input[0].length;
  canvas.width = cols;
  canvas.height = rows;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(cols, rows);
  const gray = (v) => Math.round(Math.min(1, Math.max(0, (v - lo) / (hi - lo || 1))) * 255);
  input.forEach((row, y) => row.forEach((value, x) => {
    const rgb = Array.isArray(value) ? (value.length >= 3 ? value.slice(0, 3) : [value[0], value[0], value[0]])
      : [value, value, value];
    const i = (y * cols + x) * 4;
    rgb.forEach((c, k) => { image.data[i + k] = gray(c); });
    image.data[i + 3] = 255;
  }));
  ctx.putImageData(image, 0, 0);
}

function showAnswer(box, answer, source) {
  const seen = h("canvas", { class: "seen", id: "seen", width: 28, height: 28, role: "img",
                             "aria-label": "The image the model received, as the model sees it" });
  if (Array.isArray(answer.input) && answer.input.length) drawSeen(seen, answer.input);
  const probabilities = answer.probabilities || {};
  const labels = (meta.labels && meta.labels.length) ? meta.labels : Object.keys(probabilities);
  const items = labels.filter((l) => l in probabilities)
    .map((l) => ({ label: l, value: probabilities[l] }));
  const result = answer.label !== undefined ? String(answer.label) : fmt(answer.value);
  const warnings = answer.warnings || [];
  box.replaceChildren(...[
    h("h2", { id: "answer-title" }, "The answer"),
    h("p", { class: "muted" }, `For ${source}, model version ${answer.model_version}.`),
    h("div", { class: "answer-row" },
      h("figure", { class: "seen-figure" }, seen,
        h("figcaption", { class: "muted" }, "What the model received")),
      h("p", { class: "answer-label" },
        h("span", { class: "muted" }, answer.label !== undefined ? "Predicted" : "Value"),
        h("strong", { id: "label" }, result))),
    items.length ? bars(items) : null,
    warnings.length ? h("ul", { class: "warnings" },
      warnings.map((w) => h("li", {}, `Warning: ${w.message}`))) : null,
  ].filter(Boolean)); // unlike h(), replaceChildren would print a null
  const top = items.length ? Math.max(...items.map((i) => i.value)) : null;
  status(top === null ? `Answer: ${result}.` : `Predicted ${result} (${(top * 100).toFixed(1)}%).`);
  answered += 1;
  $("content").dataset.answered = String(answered);
}

async function classify(box, blob, filename, source) {
  const ticket = ++latest;
  const form = new FormData();
  form.append("file", blob, filename);
  status("Classifying…");
  try {
    const answer = await api(predictPath, { method: "POST", body: form });
    if (ticket === latest) showAnswer(box, answer, source);
  } catch (error) {
    if (ticket === latest) status(error.message, true);
  }
}

function render() {
  const answer = h("section", { class: "answer", "aria-labelledby": "answer-title" },
    h("h2", { id: "answer-title" }, "The answer"),
    h("p", { class: "muted" }, "Draw a digit on the pad or upload a picture."));
  let timer = null;
  const sendPad = () => {
    clearTimeout(timer);
    if (!pad.drawn()) {
      status("Draw a digit first.", true);
      return;
    }
    pad.canvas.toBlob((blob) => classify(answer, blob, "pad.png", "the pad"), "image/png");
  };
  const pad = makePad(() => {
    clearTimeout(timer);
    timer = setTimeout(sendPad, DEBOUNCE_MS);
  });
  pad.canvas.addEventListener("pointerdown", () => clearTimeout(timer));

  const file = h("input", { id: "upload", type: "file", accept: "image/png,image/jpeg" });
  file.addEventListener("change", () => {
    const chosen = file.files && file.files[0];
    if (!chosen) return;
    classify(answer, chosen, chosen.name, `the upload “${chosen.name}”`);
    file.value = ""; // choosing the same file again posts it again
  });

  content(
    links(),
    h("div", { class: "pad-wrap" },
      h("section", { class: "pad-side", "aria-label": "Draw or upload" },
        pad.canvas,
        h("p", { id: "pad-hint", class: "muted pad-hint" },
          "Draw one digit with the mouse, a pen or a finger; it is classified when you ",
          "lift. No pointer? Upload a picture below."),
        h("div", { class: "pad-actions" },
          h("button", { type: "button", onclick: sendPad }, "Classify"),
          h("button", { type: "button", class: "secondary", onclick: () => {
            clearTimeout(timer);
            latest += 1;
            pad.clear();
            status("Pad cleared.");
          } }, "Clear")),
        h("div", { class: "upload" },
          h("label", { for: "upload" }, "Or upload a PNG or JPEG of a digit"), file)),
      answer));
}

async function load() {
  meta = null;
  const data = await api(`/v1/models/${encodeURIComponent(name)}/metadata`);
  const info = data.modelserve || {};
  const inputs = info.inputs || [];
  setTitle(`Draw a digit · ${name}`);
  if (inputs.length !== 1 || inputs[0].kind !== "image") {
    const kinds = inputs.map((i) => i.kind).join(", ") || "unknown";
    status(`'${name}' does not take images (its input is ${kinds}), so it has no drawing pad.`,
           true);
    content(h("p", {}, "Try it from ", h("a", { href: modelLink(name) }, `${name}'s page`),
              ", or go back to ", h("a", { href: "/ui" }, "all models"), "."));
    $("main").dataset.loaded = "true";
    return;
  }
  meta = { image: inputs[0].image, labels: info.labels };
  render();
  status("Ready: draw a digit.");
  $("main").dataset.loaded = "true";
}

await ready();
await withKey(load);
