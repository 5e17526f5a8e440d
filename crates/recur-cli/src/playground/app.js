// The recur playground: plain JavaScript over the /v1 API.
"use strict";
const $ = (id) => document.getElementById(id);
let models = [];
let generated = "";
let controller = null;

function showError(msg) {
  const e = $("error");
  e.textContent = msg || "";
  e.hidden = !msg;
}

async function api(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const j = await r.json();
  if (!r.ok) throw new Error((j.error && j.error.message) + (j.error && j.error.field ? ` (${j.error.field})` : ""));
  return j;
}

function current(kind) {
  const sel = models.find((m) => m.name === $("model").value);
  if (sel && sel.kind === kind) return sel;
  return models.find((m) => m.kind === kind);
}

function el(tag, props, text) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  if (text !== undefined) e.textContent = text;
  return e;
}

// Tabs: one per panel whose kind is served.
function buildTabs() {
  const nav = $("tabs");
  nav.textContent = "";
  const panels = [...document.querySelectorAll(".panel")].filter((p) => models.some((m) => m.kind === p.dataset.kind));
  for (const p of panels) {
    const b = el("button", { role: "tab", id: "tab-" + p.id }, p.dataset.title);
    b.addEventListener("click", () => select(p.id));
    nav.appendChild(b);
  }
  if (panels.length) select(panels[0].id);
}

function select(id) {
  // The model menu follows the tab: a model of the panel's kind.
  const kind = $(id).dataset.kind;
  const sel = models.find((m) => m.name === $("model").value);
  if (!sel || sel.kind !== kind) $("model").value = models.find((m) => m.kind === kind).name;
  for (const p of document.querySelectorAll(".panel")) p.classList.toggle("active", p.id === id);
  for (const b of document.querySelectorAll("nav button")) b.setAttribute("aria-selected", b.id === "tab-" + id);
  showError("");
  if (id === "inside") prepareInside();
}

// -- Write ----------------------------------------------------------------
function probColour(p) {
  // 0 → red, 0.5 → yellow, 1 → green, on a log-ish scale.
  const x = Math.max(0, Math.min(1, 1 + Math.log10(Math.max(p, 1e-3)) / 3));
  return `hsl(${Math.round(120 * x)} 75% 82%)`;
}

function addToken(out, t) {
  const s = el("span", { title: `p = ${t.p.toFixed(3)}` }, t.text);
  s.style.background = probColour(t.p);
  out.appendChild(s);
}

async function write() {
  const m = current("language-model");
  showError("");
  const out = $("out");
  out.textContent = "";
  const prime = $("prime").value;
  if (prime) out.appendChild(el("b", {}, prime));
  generated = prime;
  controller = new AbortController();
  $("go").disabled = true;
  $("stop").disabled = false;
  try {
    const r = await fetch("/v1/generate", {
      method: "POST", signal: controller.signal, headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: m.name, prime, stream: true, length: +$("length").value,
        temperature: +$("temperature").value, top_p: +$("topp").value }),
    });
    if (!r.ok) { const j = await r.json(); throw new Error(j.error.message); }
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const chunk = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const ev = /^event: (.*)$/m.exec(chunk);
        const data = chunk.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (!ev || !data) continue;
        const j = JSON.parse(data);
        if (ev[1] === "token") { addToken(out, j); generated += j.text; }
        else if (ev[1] === "error") throw new Error(j.error.message);
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") showError(e.message);
  } finally {
    $("go").disabled = false;
    $("stop").disabled = true;
    out.dataset.tokens = out.querySelectorAll("span").length;
  }
}

// -- Inside the network ------------------------------------------------------
function prepareInside() {
  const m = current("language-model");
  if (!m) return;
  const layer = $("layer");
  if (layer.options.length !== m.layers) {
    layer.textContent = "";
    for (let l = 0; l < m.layers; l++) layer.appendChild(el("option", { value: l }, `${l + 1} of ${m.layers}`));
  }
  $("state").disabled = m.cell !== "lstm";
  if (m.cell !== "lstm") $("state").value = "h";
  $("unit").max = m.hidden - 1;
  if (!$("itext").value) $("itext").value = generated || "First Citizen:\nBefore we proceed any further, hear me speak.\n";
}

function actColour(v) {
  const a = Math.max(-1, Math.min(1, v));
  return a >= 0 ? `rgba(255, 90, 79, ${a.toFixed(3)})` : `rgba(79, 124, 255, ${(-a).toFixed(3)})`;
}

let lastTokens = [];
async function inside() {
  const m = current("language-model");
  showError("");
  try {
    const j = await api("/v1/inspect", { model: m.name, text: $("itext").value, layer: +$("layer").value,
      state: $("state").value, unit: +$("unit").value });
    const acts = $("acts");
    acts.textContent = "";
    lastTokens = j.tokens;
    j.tokens.forEach((t, i) => {
      const s = el("span", { title: `${j.values[i].toFixed(3)}` }, t);
      s.dataset.i = i;
      s.style.background = actColour(j.values[i]);
      acts.appendChild(s);
    });
    acts.dataset.unit = j.unit;
    acts.dataset.tokens = j.tokens.length;
  } catch (e) { showError(e.message); }
}

// Selecting part of the coloured text lists the units most active on it.
async function topUnits() {
  const sel = window.getSelection();
  if (!sel || sel.isCollapsed) return;
  const acts = $("acts");
  const spans = [...acts.querySelectorAll("span")].filter((s) => sel.containsNode(s, true));
  if (!spans.length) return;
  const a = +spans[0].dataset.i, b = +spans[spans.length - 1].dataset.i + 1;
  const m = current("language-model");
  try {
    const j = await api("/v1/inspect", { model: m.name, text: $("itext").value, layer: +$("layer").value,
      state: $("state").value, span: [a, b], top: 12 });
    const ol = $("top");
    ol.textContent = "";
    for (const u of j.top_units) {
      const li = el("li", {}, `unit ${u.unit}: ${u.score >= 0 ? "+" : ""}${u.score.toFixed(3)}`);
      li.addEventListener("click", () => { $("unit").value = u.unit; inside(); });
      ol.appendChild(li);
    }
  } catch (e) { showError(e.message); }
}

// -- Translate, classify, tag -------------------------------------------------
async function translate() {
  const m = current("seq2seq");
  showError("");
  try {
    const j = await api("/v1/translate", { model: m.name, text: $("source").value, beam: +$("beam").value, attention: true });
    const t = j.translations[0];
    $("target").textContent = t.text;
    const table = el("table");
    const head = el("tr");
    head.appendChild(el("th"));
    for (const s of j.source_tokens) head.appendChild(el("th", {}, s));
    const thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    const outs = t.tokens.concat(["</s>"]);
    (t.attention || []).forEach((row, i) => {
      const tr = el("tr");
      tr.appendChild(el("th", {}, outs[i] || ""));
      for (const w of row) {
        const td = el("td", { title: w.toFixed(3) });
        td.style.background = `rgba(61, 90, 254, ${w.toFixed(3)})`;
        tr.appendChild(td);
      }
      table.appendChild(tr);
    });
    $("heat").textContent = "";
    $("heat").appendChild(table);
  } catch (e) { showError(e.message); }
}

async function classify() {
  const m = current("classifier");
  showError("");
  try {
    const j = await api("/v1/classify", { model: m.name, text: $("ctext").value, prefixes: true });
    $("label").textContent = `${j.label} (${(100 * j.p).toFixed(1)}%)`;
    const box = $("prefixes");
    box.textContent = "";
    for (const p of j.prefixes) {
      const d = el("div", { title: `after "${p.word}": ${p.label} ${(100 * p.p).toFixed(1)}%` });
      d.appendChild(el("span", {}, p.word));
      d.appendChild(el("small", {}, p.label));
      const bar = el("span", { className: "bar" });
      bar.style.width = `${Math.round(100 * p.p)}%`;
      d.appendChild(bar);
      box.appendChild(d);
    }
  } catch (e) { showError(e.message); }
}

async function tag() {
  const m = current("tagger");
  showError("");
  try {
    const j = await api("/v1/tag", { model: m.name, text: $("ttext").value });
    const box = $("tags");
    box.textContent = "";
    j.tokens.forEach((t, i) => {
      const d = el("div", { title: `p = ${j.probabilities[i].toFixed(3)}` });
      d.appendChild(el("span", {}, t));
      d.appendChild(el("small", {}, j.tags[i]));
      box.appendChild(d);
    });
  } catch (e) { showError(e.message); }
}

// -- Start ----------------------------------------------------------------------
for (const [input, output] of [["temperature", "tv"], ["topp", "pv"], ["length", "lv"], ["beam", "bv"]]) {
  $(input).addEventListener("input", () => { $(output).textContent = $(input).value; });
}
$("go").addEventListener("click", write);
$("stop").addEventListener("click", () => controller && controller.abort());
$("show").addEventListener("click", inside);
$("acts").addEventListener("mouseup", topUnits);
$("acts").addEventListener("touchend", topUnits);
$("tr").addEventListener("click", translate);
$("cl").addEventListener("click", classify);
$("tg").addEventListener("click", tag);
$("model").addEventListener("change", () => {
  const m = models.find((x) => x.name === $("model").value);
  const p = [...document.querySelectorAll(".panel")].find((x) => x.dataset.kind === m.kind);
  if (p) select(p.id);
});

async function start() {
  const r = await fetch("/v1/models");
  models = (await r.json()).models;
  for (const m of models) $("model").appendChild(el("option", { value: m.name }, `${m.name} (${m.kind})`));
  buildTabs();
}

// For the browser test: generate, switch to the activation view, show a
// unit, and report what the DOM holds.
window.recurSelftest = async function () {
  await ready;
  const report = {};
  try {
    $("prime").value = "";
    $("length").value = 40;
    $("length").dispatchEvent(new Event("input"));
    await write();
    report.generated = $("out").querySelectorAll("span").length;
    $("tab-inside").click();
    $("unit").value = 3;
    await inside();
    report.activations = $("acts").querySelectorAll("span").length;
    report.unit = +$("acts").dataset.unit;
    report.tab = document.querySelector(".panel.active").id;
    report.error = $("error").hidden ? null : $("error").textContent;
  } catch (e) {
    report.error = String(e);
  }
  return report;
};

const ready = start().catch((e) => showError("cannot reach the server: " + e.message));
