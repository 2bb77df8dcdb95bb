// ppshitu's page: plain JS against the service's own API (no build step, no libraries).
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { writes: false, itemsLabel: null, itemsOffset: 0, pageSize: 60 };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function say(text, isError = false) {
  const box = $("#message");
  box.textContent = text;
  box.className = "shown" + (isError ? " error" : "");
  clearTimeout(say.timer);
  say.timer = setTimeout(() => { box.className = ""; }, isError ? 8000 : 3500);
}

function token() { return sessionStorage.getItem("ppshitu-token") || ""; }

async function call(method, url, body, write = false) {
  const headers = {};
  if (write && token()) headers["Authorization"] = "Bearer " + token();
  if (body && !(body instanceof FormData) && !(body instanceof Blob)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const res = await fetch(url, { method, headers, body });
  let data = null;
  try { data = await res.json(); } catch (e) { data = { error: res.statusText }; }
  if (!res.ok) {
    const err = new Error((data && data.error) || ("HTTP " + res.status));
    err.status = res.status;
    err.data = data;
    throw err;
  }
  return data;
}

// colours per label, stable (the same hash idea as ppshitu.visualize)
function colour(label) {
  if (!label || label === "unknown") return "rgb(160,160,160)";
  let h = 0;
  for (const ch of label) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${h % 360}, 80%, 45%)`;
}

function fmt(score) { return score === null || score === undefined ? "" : Number(score).toFixed(2); }

// ------------------------------------------------------------------ status / writes
async function loadHealth() {
  try {
    const h = await call("GET", "/health");
    state.writes = h.writes_enabled;
    $("#gallery-status").textContent =
      `gallery ${h.version}: ${h.count} images, ${h.labels} classes · model ${h.model.fingerprint || "?"}` +
      (h.stale ? " · warning: " + h.stale : "");
    document.body.classList.toggle("read-only", !h.writes_enabled);
    const textOk = Boolean(h.model.text_search);  // a text-image model's gallery answers text queries
    $("#search-text").disabled = $("#search-text-go").disabled = !textOk;
    $("#search-text-hint").textContent = textOk ? "" : "(text search needs a gallery indexed with a text-image " +
      "model: tools/import_model.py --text-encoder)";
    const ws = $("#write-status");
    ws.textContent = "";
    if (!h.writes_enabled) {
      ws.append(el("div", { class: "banner", id: "read-only-banner",
        text: "Read-only: this server was started without a token, so adding, renaming and deleting are " +
              "disabled (start deploy/serve.py with --token or PPSHITU_TOKEN)." }));
    } else {
      const input = el("input", { type: "password", id: "token", placeholder: "token", autocomplete: "off" });
      input.value = token();
      input.addEventListener("change", () => { sessionStorage.setItem("ppshitu-token", input.value.trim()); });
      ws.append(el("div", { class: "token" }, el("label", { text: "Token for changes: " }, input)));
    }
  } catch (e) {
    $("#gallery-status").textContent = "the service does not answer: " + e.message;
  }
}

// ------------------------------------------------------------------ recognise
async function recognise(file) {
  const list = $("#predict-results");
  list.dataset.state = "busy";
  list.textContent = "";
  list.append(el("li", { class: "muted", text: "recognising…" }));
  const form = new FormData();
  form.append("image", file);
  let out;
  try {
    out = await call("POST", "/predict", form);
  } catch (e) {
    list.textContent = "";
    list.append(el("li", { class: "error", text: e.message }));
    list.dataset.state = "error";
    return;
  }
  await drawResults(file, out.results);
  list.textContent = "";
  if (!out.results.length) list.append(el("li", { class: "muted", text: "nothing recognised" }));
  for (const r of out.results) {
    const known = r.rec_docs !== "unknown";
    const item = el("li", { class: "result" },
      el("span", { class: "swatch", "data-colour": colour(r.rec_docs) }),
      el("span", { class: "result-label" + (known ? "" : " unknown"), text: r.rec_docs }),
      el("span", { class: "muted", text: ` ${fmt(r.rec_scores)}` +
        (known ? "" : (r.nearest_docs ? ` (nearest: ${r.nearest_docs})` : "")) +
        (r.source === "image" ? " · whole image" : ` · box ${r.bbox.join(",")}`) }));
    item.querySelector(".swatch").style.background = colour(r.rec_docs);
    const near = el("div", { class: "nearest" });
    for (const t of (r.topk || []).slice(0, 5)) {
      if (t.id === undefined) continue;
      near.append(el("img", { src: `/api/items/${t.id}/thumbnail?size=96`, alt: t.label,
        title: `${t.label} ${fmt(t.score)}`, loading: "lazy" }));
    }
    item.append(near);
    list.append(item);
  }
  list.dataset.state = "done";
}

async function drawResults(file, results) {
  const canvas = $("#predict-canvas");
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(640 / bitmap.width, Math.max(1, 360 / bitmap.width));  // small photos shown larger
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  const font = Math.max(11, Math.round(canvas.height / 22));
  ctx.font = `bold ${font}px sans-serif`;
  ctx.lineWidth = Math.max(2, Math.round(canvas.height / 200));
  for (const r of results) {
    const [x1, y1, x2, y2] = r.bbox.map((v) => v * scale);
    const c = colour(r.rec_docs);
    ctx.strokeStyle = c;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${r.rec_docs} ${fmt(r.rec_scores)}`;
    const w = ctx.measureText(text).width + 6;
    const ty = y1 - font - 4 >= 0 ? y1 - font - 4 : y1;
    const tx = Math.min(x1, Math.max(0, canvas.width - w));
    ctx.fillStyle = c;
    ctx.fillRect(tx, ty, w, font + 4);
    ctx.fillStyle = "#000";
    ctx.fillText(text, tx + 3, ty + font);
  }
}

// ------------------------------------------------------------------ search
async function search(file) {
  const form = new FormData();
  form.append("image", file);
  await showSearch(form);
}

// a text query (a text-image model's gallery): the service cuts a long one to the model's context length, and says so
async function searchText(event) {
  event.preventDefault();
  const text = $("#search-text").value;
  if (!text.trim()) { say("type words to search for", true); return; }
  await showSearch({ text });
}

async function showSearch(body) {
  const grid = $("#search-results");
  grid.dataset.state = "busy";
  grid.textContent = "searching…";
  $("#search-note").textContent = "";
  try {
    const out = await call("POST", "/search?k=8", body);
    grid.textContent = "";
    if (out.note) $("#search-note").textContent = out.note;
    if (!out.results.length) grid.textContent = "the gallery is empty";
    for (const r of out.results) grid.append(tile(r, `${r.label} ${fmt(r.score)}`, false));
    grid.dataset.state = "done";
  } catch (e) {
    grid.textContent = "";
    grid.append(el("p", { class: "error", text: e.message }));
    grid.dataset.state = "error";
  }
}

function tile(item, caption, deletable) {
  const t = el("div", { class: "tile", "data-id": String(item.id) },
    el("img", { src: `${item.thumbnail}?size=160`, alt: item.label, loading: "lazy" }),
    el("div", { class: "caption", text: caption, title: caption }));
  if (deletable && state.writes) {
    t.append(el("button", { type: "button", class: "danger write delete-item", text: "delete",
      onclick: () => deleteItem(item) }));
  }
  return t;
}

// ------------------------------------------------------------------ classes
async function loadLabels() {
  const body = $("#labels-list");
  let out;
  try { out = await call("GET", "/api/labels"); } catch (e) { say(e.message, true); return; }
  body.textContent = "";
  for (const { label, count } of out.labels) {
    const actions = el("td", { class: "actions" },
      el("button", { type: "button", class: "show-label", text: "show", onclick: () => showItems(label, true) }));
    if (state.writes) {
      actions.append(
        el("button", { type: "button", class: "write rename-label", text: "rename", onclick: () => renameLabel(label) }),
        el("button", { type: "button", class: "danger write delete-label", text: "delete",
          onclick: () => deleteLabel(label, count) }));
    }
    body.append(el("tr", { class: "label-row", "data-label": label },
      el("td", { class: "label-name", text: label }), el("td", { text: String(count) }), actions));
  }
  if (!out.labels.length) body.append(el("tr", {}, el("td", { colspan: "3", class: "muted", text: "no classes yet" })));
  if (state.itemsLabel !== null && !out.labels.some((l) => l.label === state.itemsLabel)) $("#items-panel").hidden = true;
}

async function showItems(label, fresh) {
  if (fresh) { state.itemsLabel = label; state.itemsOffset = 0; $("#items").textContent = ""; }
  const q = new URLSearchParams({ label, offset: String(state.itemsOffset), limit: String(state.pageSize) });
  let out;
  try { out = await call("GET", "/api/items?" + q); } catch (e) { say(e.message, true); return; }
  $("#items-panel").hidden = false;
  $("#items-label").textContent = label;
  $("#items-count").textContent = `(${out.total})`;
  for (const item of out.items) $("#items").append(tile(item, `#${item.id} ${item.name || ""}`, true));
  state.itemsOffset += out.items.length;
  $("#items-more").hidden = state.itemsOffset >= out.total;
}

async function refreshAll() { await Promise.all([loadHealth(), loadLabels()]); }

async function writeCall(method, url, body) {
  try {
    return await call(method, url, body, true);
  } catch (e) {
    if (e.status === 401) say("The token is missing or wrong: enter it at the top of the page.", true);
    else say(e.message, true);
    throw e;
  }
}

async function deleteItem(item) {
  if (!confirm(`Delete image #${item.id} of ${item.label}?`)) return;
  try { await writeCall("DELETE", `/api/items/${item.id}`); } catch (e) { return; }
  say(`deleted image #${item.id}`);
  const t = document.querySelector(`#items .tile[data-id="${item.id}"]`);
  if (t) t.remove();
  await refreshAll();
}

async function deleteLabel(label, count) {
  if (!confirm(`Delete the class ${label} and its ${count} images?`)) return;
  try { await writeCall("DELETE", "/api/labels/" + encodeURIComponent(label)); } catch (e) { return; }
  say(`deleted class ${label}`);
  if (state.itemsLabel === label) $("#items-panel").hidden = true;
  await refreshAll();
}

async function renameLabel(label) {
  const name = prompt(`New name for ${label}:`, label);
  if (!name || name.trim() === label) return;
  let out;
  try {
    out = await writeCall("PATCH", "/api/labels/" + encodeURIComponent(label), { label: name.trim() });
  } catch (e) {
    if (e.status === 409 && confirm(`${name} exists: merge ${label} into it?`)) {
      try {
        out = await writeCall("PATCH", "/api/labels/" + encodeURIComponent(label) + "?merge=1", { label: name.trim() });
      } catch (e2) { return; }
    } else return;
  }
  say(`renamed ${label} to ${out.label} (${out.moved} images)`);
  await refreshAll();
}

async function addImages(ev) {
  ev.preventDefault();
  const status = $("#add-status");
  const label = $("#add-label").value.trim();
  const files = $("#add-files").files;
  if (!label || !files.length) { status.textContent = "give a class name and at least one image"; return; }
  const form = new FormData();
  form.append("label", label);
  for (const f of files) form.append("images", f);
  status.className = "";
  status.textContent = `adding ${files.length} image(s) to ${label}…`;
  let out;
  try {
    out = await call("POST", "/api/items", form, true);
  } catch (e) {
    status.className = "error";
    status.textContent = e.status === 401 ? "The token is missing or wrong: enter it at the top of the page."
      : e.message + (e.data && e.data.rejected ? " — " + e.data.rejected.map((r) => r.error).join("; ") : "");
    return;
  }
  const parts = [`added ${out.added.length} image(s) to ${out.label}`];
  if (out.duplicates.length) parts.push(`${out.duplicates.length} already in the gallery`);
  if (out.rejected.length) parts.push(`${out.rejected.length} refused: ` + out.rejected.map((r) => r.error).join("; "));
  status.textContent = parts.join(", ");
  $("#add-files").value = "";
  await refreshAll();
  await showItems(out.label, true);
}

async function compact() {
  try {
    const out = await writeCall("POST", "/api/compact");
    say(`index rebuilt: ${out.count} images (${out.version})`);
  } catch (e) { return; }
  await loadHealth();
}

// ------------------------------------------------------------------ wiring
function dropZone(zone, input, handler) {
  input.addEventListener("change", () => { if (input.files.length) handler(input.files[0]); input.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) handler(e.dataTransfer.files[0]);
  });
}

document.addEventListener("DOMContentLoaded", async () => {
  dropZone($("#predict-drop"), $("#predict-input"), recognise);
  dropZone($("#search-drop"), $("#search-input"), search);
  $("#search-text-form").addEventListener("submit", searchText);
  $("#add-form").addEventListener("submit", addImages);
  $("#refresh-labels").addEventListener("click", refreshAll);
  $("#compact").addEventListener("click", compact);
  $("#items-more").addEventListener("click", () => showItems(state.itemsLabel, false));
  await loadHealth();
  await loadLabels();
  document.body.dataset.ready = "1";
});
