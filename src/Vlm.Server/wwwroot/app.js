// The Vlm web page: one image + one text → ITM score, VQA answers, retrieval thumbnails, attention heat map.
// Plain ES2020, no build step and nothing loaded from elsewhere: the service may run with no network at all.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  image: null,        // { blob, name, base64, url } of the selected image
  heat: null,         // last /v1/attention response, redrawn on resize / colour-map / token change
  heatToken: -1,      // which text token's map is drawn; -1: the response's overall heatmap
  retrieval: true,    // false once the server said it has no index (the section stays hidden)
  caption: true,      // false once the server said it has no captioning model (501)
  busy: false,
  seq: 0,             // request generation: answers to an older image/text are dropped
};

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, body) {
  let res;
  try {
    res = await fetch(path, body === undefined ? {} : {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, `cannot reach the server (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: reported below */ }
  if (!res.ok) {
    // The service answers errors as {"error": "..."}; anything else (a proxy page, an empty 500) is shown briefly.
    const msg = data && typeof data.error === "string" ? data.error
      : `${res.status} ${res.statusText}${text ? ": " + text.slice(0, 200) : ""}`;
    throw new ApiError(res.status, msg);
  }
  if (data === null) throw new ApiError(res.status, `${path}: the server sent no JSON`);
  return data;
}

// The server has no such feature configured (no index, no BLIP model): hide it instead of reporting an error.
const unavailable = (e) => e instanceof ApiError && (e.status === 404 || e.status === 501 || e.status === 503);

// ---------------------------------------------------------------- errors and status

const errors = new Map();   // part → message; one line per failing part

function setError(part, message) {
  if (message) errors.set(part, message); else errors.delete(part);
  const box = $("error");
  box.hidden = errors.size === 0;
  box.textContent = [...errors].map(([p, m]) => (p ? `${p}: ` : "") + m).join("\n");
}

function clearErrors() { errors.clear(); setError("", null); }

function setStatus(text) { $("status").textContent = text; }

// ---------------------------------------------------------------- image selection

const ACCEPTED = /^image\/(png|jpeg|bmp|x-portable-(pix|gray|any)map)$|\.(png|jpe?g|bmp|ppm|pgm)$/i;

function readBase64(blob) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).replace(/^data:[^,]*,/, ""));
    r.onerror = () => reject(r.error || new Error("cannot read the file"));
    r.readAsDataURL(blob);
  });
}

async function setImage(blob, name) {
  if (!ACCEPTED.test(blob.type) && !ACCEPTED.test(name)) {
    setError("Image", `${name}: not a PNG, JPEG, BMP or PPM/PGM image`);
    return;
  }
  clearErrors();
  const base64 = await readBase64(blob);
  if (state.image) URL.revokeObjectURL(state.image.url);
  state.image = { blob, name, base64, url: URL.createObjectURL(blob) };
  state.seq++;
  state.heat = null;
  const img = $("preview");
  img.alt = `Selected image: ${name}`;
  img.src = state.image.url;
  $("stage").hidden = false;
  $("drop-text").textContent = "Drop another image, paste one, or";
  clearHeat();
  for (const id of ["itm-card", "vqa-card", "heat-card", "caption-card", "retrieval"]) $(id).hidden = true;
  setStatus(`Image: ${name}. Type a caption or question and press Ask.`);
  for (const b of document.querySelectorAll("#demo-strip button")) b.setAttribute("aria-pressed", String(b.dataset.name === name));
  if (state.caption) caption(state.seq);
}

async function setImageFromUrl(url, name) {
  try {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
    await setImage(await res.blob(), name);
  } catch (e) {
    setError("Image", `cannot load ${name}: ${e.message}`);
  }
}

function wireImageInput() {
  const drop = $("drop"), file = $("file");
  file.addEventListener("change", () => { if (file.files[0]) setImage(file.files[0], file.files[0].name); file.value = ""; });
  // The button is the keyboard / screen-reader way in; a click anywhere else on the zone is a mouse shortcut.
  $("pick").addEventListener("click", (e) => { e.stopPropagation(); file.click(); });
  drop.addEventListener("click", (e) => { if (e.target !== file) file.click(); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer.files[0];
    if (f) { setImage(f, f.name); return; }
    // A demo thumbnail dragged from the strip arrives as a URL of this server.
    const uri = (e.dataTransfer.getData("text/uri-list") || "").split("\n")[0].trim();
    if (uri && new URL(uri, location.href).origin === location.origin) setImageFromUrl(uri, uri.split("/").pop());
    else setError("Image", "drop an image file (or a demo image from the strip)");
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData?.items || [])].find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (item) { e.preventDefault(); setImage(item.getAsFile(), "pasted image"); }
  });
}

async function loadDemoImages() {
  let list;
  try { list = await api("/v1/demo-images"); } catch (e) { if (!unavailable(e)) setError("Demo images", e.message); return; }
  if (!Array.isArray(list) || list.length === 0) return;
  const strip = $("demo-strip");
  strip.replaceChildren(...list.map(({ name, url, caption }) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.name = name;
    b.setAttribute("aria-pressed", "false");
    b.title = name;
    const img = document.createElement("img");
    img.src = url;
    img.alt = `Demo image ${name}`;
    b.append(img);
    b.addEventListener("click", async () => {
      await setImageFromUrl(url, name);
      // The demo's true caption is a handy first thing to try (a hint only: the field keeps what was typed).
      if (caption) $("text").placeholder = caption;
    });
    li.append(b);
    return li;
  }));
  $("demo").hidden = false;
}

async function loadInfo() {
  // Which model the service runs, and whether it has an index / a captioner: parts it lacks are never asked for.
  try {
    const h = await api("/healthz");
    if (!h || typeof h !== "object") return;
    if (h.index === null) state.retrieval = false;
    if (h.caption === false) state.caption = false;
    const parts = [];
    if (h.model) parts.push(`model: ${h.model}`);
    if (Array.isArray(h.heads) && h.heads.length) parts.push(`heads: ${h.heads.join(", ")}`);
    parts.push(h.index && Number.isFinite(h.index.count) ? `index: ${h.index.count} images` : "no index");
    parts.push(h.caption ? "captions on" : "no captioner");
    $("model-info").textContent = parts.join(" · ");
  } catch { /* no /healthz details: every part is tried and hides itself if the service lacks it */ }
}

// ---------------------------------------------------------------- requests

async function caption(seq) {
  try {
    const r = await api("/v1/caption", { image: state.image.base64 });
    if (seq !== state.seq) return;
    $("caption").textContent = r.caption;
    $("caption-card").hidden = false;
  } catch (e) {
    if (unavailable(e)) state.caption = false;
    else if (seq === state.seq) setError("Caption", e.message);
  }
}

async function ask(ev) {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (!state.image) { setError("", "Choose an image first (drop one, pick a file, or click a demo image)."); $("pick").focus(); return; }
  if (!text) { setError("", "Type a caption or a question."); $("text").focus(); return; }
  clearErrors();
  const seq = ++state.seq;
  const image = state.image.base64;
  const t0 = performance.now();
  setBusy(true);
  setStatus("Working…");

  const parts = [
    run("Match", api("/v1/itm", { image, text }), (r) => showItm(r)),
    run("Answers", api("/v1/vqa", { image, question: text, top_k: 5 }), (r) => showVqa(r)),
    run("Heat map", api("/v1/attention", { image, text }), (r) => showHeat(r)),
  ];
  if (state.retrieval) {
    parts.push(run("Retrieval", api("/v1/retrieve", { text, top_k: 8, rerank: true }), (r) => showRetrieval(r, "text"),
      (e) => { if (unavailable(e)) { state.retrieval = false; return true; } return false; }));
  }
  const ok = await Promise.all(parts);
  if (seq !== state.seq) return;
  setBusy(false);
  const ms = Math.round(performance.now() - t0);
  setStatus(ok.every(Boolean) ? `Done in ${ms} ms.` : `Finished in ${ms} ms with errors (see above).`);

  async function run(part, promise, show, quiet) {
    try {
      const r = await promise;
      if (seq === state.seq) show(r);
      return true;
    } catch (e) {
      if (seq !== state.seq) return true;
      if (quiet && quiet(e)) return true;
      setError(part, e.message);
      return false;
    }
  }
}

function setBusy(b) {
  state.busy = b;
  $("submit").disabled = b;
  $("results").setAttribute("aria-busy", String(b));
}

// ---------------------------------------------------------------- rendering

const pct = (p) => `${(100 * p).toFixed(p >= 0.995 || p < 0.001 ? 1 : 0)}%`;

function showItm(r) {
  const s = Number(r.score);
  $("itm-score").textContent = pct(s);
  $("itm-score").dataset.score = String(s);
  $("itm-bar").style.width = `${Math.max(0, Math.min(1, s)) * 100}%`;
  $("itm-logits").textContent = Array.isArray(r.logits)
    ? `logits (no match, match): ${r.logits.map((x) => Number(x).toFixed(3)).join(", ")}` : "";
  $("itm-card").hidden = false;
}

function showVqa(r) {
  const ol = $("vqa-answers");
  ol.replaceChildren(...(r.answers || []).map(({ answer, probability }) => {
    const li = document.createElement("li");
    li.dataset.answer = answer;
    li.dataset.probability = String(probability);
    const row = document.createElement("div");
    row.className = "a";
    const b = document.createElement("b");
    b.textContent = answer;
    const p = document.createElement("span");
    p.textContent = pct(probability);
    row.append(b, p);
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.style.width = `${Math.max(0, Math.min(1, probability)) * 100}%`;
    bar.append(fill);
    li.append(row, bar);
    return li;
  }));
  $("vqa-card").hidden = false;
}

async function retrieveByImage() {
  if (!state.image) return;
  const seq = state.seq, btn = $("by-image");
  btn.disabled = true;
  setError("Retrieval", null);
  try {
    const r = await api("/v1/retrieve", { image: state.image.base64, top_k: 8 });
    if (seq === state.seq) showRetrieval(r, "image");
  } catch (e) {
    if (seq === state.seq) setError("Retrieval", e.message);
  } finally {
    btn.disabled = false;
  }
}

function showRetrieval(r, by) {
  $("ret-h").textContent = by === "image" ? "Index entries like this picture" : "Index entries matching the text";
  const grid = $("ret-grid");
  grid.replaceChildren(...(r.results || []).map((x, i) => {
    const li = document.createElement("li");
    const fig = document.createElement("figure");
    const cap = document.createElement("figcaption");
    const scores = `${Number(x.score).toFixed(3)}`
      + (x.itm_score !== undefined && x.itm_score !== null ? ` · match ${pct(Number(x.itm_score))}` : "");
    if (x.kind && x.kind !== "image") {
      // A caption index: the entry is text (its source is the caption), shown as a quote instead of a thumbnail.
      const q = document.createElement("blockquote");
      q.textContent = String(x.path);
      cap.textContent = `${i + 1}. ${x.id} · ${scores}`;
      fig.append(q, cap);
    } else {
      const img = document.createElement("img");
      img.src = x.image_url || "/v1/index-image/" + String(x.id).split("/").map(encodeURIComponent).join("/");
      const name = String(x.path || x.id).split(/[\\/]/).pop();
      img.alt = `Result ${i + 1}: ${name}`;
      cap.textContent = `${i + 1}. ${name} · ${scores}`;
      fig.append(img, cap);
    }
    li.append(fig);
    return li;
  }));
  $("retrieval").hidden = false;
}

// ---------------------------------------------------------------- heat map

// Colour maps as evenly spaced stops (matplotlib's inferno / viridis sampled at tenths; jet; grey).
const CMAPS = {
  inferno: ["000004", "1b0c41", "4a0c6b", "781c6d", "a52c60", "cf4446", "ed6925", "fb9b06", "f7d13d", "fcffa4"],
  viridis: ["440154", "482878", "3e4989", "31688e", "26828e", "1f9e89", "35b779", "6ece58", "b5de2b", "fde725"],
  jet: ["00007f", "0000ff", "007fff", "00ffff", "7fff7f", "ffff00", "ff7f00", "ff0000", "7f0000"],
  gray: ["000000", "ffffff"],
};

function colour(name, v) {
  const stops = CMAPS[name] || CMAPS.inferno;
  const x = Math.max(0, Math.min(1, Number.isFinite(v) ? v : 0)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
  const a = parseInt(stops[i], 16), b = parseInt(stops[i + 1], 16);
  const mix = (sh) => Math.round(((a >> sh) & 255) * (1 - f) + ((b >> sh) & 255) * f);
  return [mix(16), mix(8), mix(0)];
}

function drawLegend() {
  const c = $("legend"), g = c.getContext("2d");
  const data = g.createImageData(c.width, 1);
  for (let x = 0; x < c.width; x++) {
    const [r, gg, b] = colour($("cmap").value, x / (c.width - 1));
    data.data.set([r, gg, b, 255], 4 * x);
  }
  for (let y = 0; y < c.height; y++) g.putImageData(data, 0, y);
}

function clearHeat() {
  const c = $("heat");
  c.getContext("2d").clearRect(0, 0, c.width, c.height);
  c.dataset.drawn = "false";
}

function showHeat(r) {
  state.heat = r;
  state.heatToken = -1;
  const box = $("heat-tokens");
  const per = Array.isArray(r.token_heatmaps) && Array.isArray(r.tokens) && r.token_heatmaps.length === r.tokens.length;
  box.replaceChildren();
  box.hidden = !per;
  if (per) {
    // One radio per text token: whose attention over the image is drawn (-1: the whole text, i.e. the heatmap field).
    const legend = document.createElement("legend");
    legend.textContent = "Attention of";
    box.append(legend);
    const choices = [[-1, "whole text"], ...r.tokens.map((t, i) => [i, t])];
    for (const [i, label] of choices) {
      const l = document.createElement("label");
      l.className = "chip";
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "heat-token";
      input.value = String(i);
      input.checked = i === -1;
      input.addEventListener("change", () => { state.heatToken = i; drawHeat(); });
      const span = document.createElement("span");
      span.textContent = label;
      l.append(input, span);
      box.append(l);
    }
  }
  $("heat-card").hidden = false;
  drawHeat();
}

// Scale the preview (up or down) to fill the drop zone, keeping its aspect ratio: small images stay readable and
// the heat-map canvas, sized from the <img>, lines up with it exactly.
function fitPreview() {
  const img = $("preview");
  if (!img.complete || !img.naturalWidth) return;
  const maxW = Math.max(100, $("drop").clientWidth - 24), maxH = 400;
  const k = Math.min(maxW / img.naturalWidth, maxH / img.naturalHeight);
  img.style.width = `${Math.round(img.naturalWidth * k)}px`;
  img.style.height = `${Math.round(img.naturalHeight * k)}px`;
}

// The part of the source image the model saw, in source pixels: `region` {x, y, w, h} when the server sends it.
// Otherwise a square grid over a non-square image means BridgeTower's processor (resize the shortest edge, then
// centre-crop a square), so the centre square; anything else covers the whole image.
function heatRegion(r, w, h) {
  const g = r.region;
  if (g && [g.x, g.y, g.w, g.h].every(Number.isFinite) && g.w > 0 && g.h > 0) return g;
  if (r.grid_w === r.grid_h && w !== h) {
    const s = Math.min(w, h);
    return { x: (w - s) / 2, y: (h - s) / 2, w: s, h: s };
  }
  return { x: 0, y: 0, w, h };
}

// The heat map is drawn over heatRegion(); outside it the image is left as it is.
function drawHeat() {
  fitPreview();
  const r = state.heat, img = $("preview"), c = $("heat");
  if (!r || !img.complete || !img.naturalWidth) return;
  const gw = r.grid_w, gh = r.grid_h, hm = state.heatToken >= 0 ? r.token_heatmaps[state.heatToken] : r.heatmap;
  if (!(gw > 0 && gh > 0) || !Array.isArray(hm) || hm.length !== gh) { setError("Heat map", "malformed heat map from the server"); return; }
  const w = img.clientWidth, h = img.clientHeight, dpr = window.devicePixelRatio || 1;
  c.style.left = `${img.offsetLeft}px`;
  c.style.top = `${img.offsetTop}px`;
  c.style.width = `${w}px`;
  c.style.height = `${h}px`;
  c.width = Math.max(1, Math.round(w * dpr));
  c.height = Math.max(1, Math.round(h * dpr));
  c.style.opacity = String($("opacity").value / 100);

  const cells = document.createElement("canvas");
  cells.width = gw;
  cells.height = gh;
  const cg = cells.getContext("2d"), data = cg.createImageData(gw, gh), cmap = $("cmap").value;
  for (let y = 0; y < gh; y++) {
    for (let x = 0; x < gw; x++) {
      const [rr, gg, bb] = colour(cmap, hm[y][x]);
      data.data.set([rr, gg, bb, 255], 4 * (y * gw + x));
    }
  }
  cg.putImageData(data, 0, 0);

  const reg = heatRegion(r, img.naturalWidth, img.naturalHeight);
  const sx = c.width / img.naturalWidth, sy = c.height / img.naturalHeight;
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  g.imageSmoothingEnabled = true;
  g.imageSmoothingQuality = "high";
  g.drawImage(cells, reg.x * sx, reg.y * sy, reg.w * sx, reg.h * sy);
  c.dataset.drawn = "true";
}

// ---------------------------------------------------------------- start

function init() {
  wireImageInput();
  $("ask").addEventListener("submit", ask);
  $("by-image").addEventListener("click", retrieveByImage);
  $("preview").addEventListener("load", drawHeat);
  // PPM/PGM (and broken files) the browser cannot show: the service may still read them, so only say so.
  $("preview").addEventListener("error", () => {
    if (!state.image) return;
    $("stage").hidden = true;
    $("drop-text").textContent = `${state.image.name} is selected (this browser cannot preview it). Drop another image, paste one, or`;
  });
  window.addEventListener("resize", drawHeat);
  $("opacity").addEventListener("input", () => {
    $("opacity-out").textContent = `${$("opacity").value}%`;
    $("heat").style.opacity = String($("opacity").value / 100);
  });
  $("cmap").addEventListener("change", () => { drawLegend(); drawHeat(); });
  drawLegend();
  loadInfo();
  loadDemoImages();
}

init();
