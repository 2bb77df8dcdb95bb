// The gallery doctor's page: GET /api/gallery/doctor rendered as tables (plain JS, text only, no HTML from data).
"use strict";

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function tile(item, caption) {
  return el("div", { class: "tile" },
    el("img", { src: item.thumbnail + "?size=96", alt: item.label, loading: "lazy", title: item.name || "" }),
    el("div", { class: "caption", text: caption === undefined ? item.label : caption }));
}

function row(...cells) {
  const tr = el("tr");
  for (const c of cells) tr.append(c instanceof Node ? c : el("td", { text: String(c) }));
  return tr;
}

function render(d) {
  const s = d.summary || {};
  $("#doctor-status").textContent = `version ${d.version ?? "-"}: ${d.items} images, ${d.labels} labels; ` +
    `leave-one-out recall@1 ${s.loo_recall_at_1 ?? "-"}; ${d.suspected_mislabels.length} suspected mislabels, ` +
    `${d.same_image_two_labels.length} images under two labels, ${d.outliers.length} outliers`;
  const mis = $("#mislabels-table tbody");
  $("#mislabels-count").textContent = `(${d.suspected_mislabels.length})`;
  for (const m of d.suspected_mislabels) {
    const nb = el("td");
    for (const n of m.neighbours) nb.append(tile(n, `${n.label} ${n.score.toFixed(3)}`));
    const what = el("td", {}, "labelled ", el("b", { text: m.label }), el("br"), "suggested ",
      el("span", { class: "suggested", text: m.suggested }), el("br"), `position ${m.position}`);
    mis.append(row(el("td", { class: "bad" }, tile(m)), what, nb));
  }
  const labels = $("#doctor-labels tbody");
  for (const r of d.label_table) {
    const rec = r.loo_recall_at_1;
    const cell = el("td", { text: rec === null || rec === undefined ? "" : String(rec) });
    if (rec !== null && rec !== undefined && rec < 0.5) cell.className = "low";
    labels.append(row(r.label, r.count, cell));
  }
  const conf = $("#confused-table tbody");
  for (const p of d.confused_pairs) {
    conf.append(row(`${p.labels[0]} / ${p.labels[1]}`, `${p.count} (${Math.round(p.rate * 100)} %)`,
      `${p.counts[0]} / ${p.counts[1]}`));
  }
  $("#same-count").textContent = `(${d.same_image_two_labels.length})`;
  for (const p of d.same_image_two_labels) {
    $("#same-list").append(el("div", { class: "pair" }, tile(p.items[0]), tile(p.items[1]),
      el("span", { text: `${p.kind}, cosine ${p.cosine}` })));
  }
  $("#outliers-count").textContent = `(${d.outliers.length})`;
  for (const o of d.outliers) $("#outliers-list").append(tile(o, `${o.label} z ${o.z}`));
  $("#singles-count").textContent = `(${d.single_image_labels.length})`;
  $("#singles-list").textContent = d.single_image_labels.join(", ");
  document.body.dataset.ready = "1";
}

async function load() {
  try {
    const res = await fetch("/api/gallery/doctor");
    const data = await res.json();
    if (!res.ok) throw new Error(data.error || ("HTTP " + res.status));
    render(data);
  } catch (e) {
    $("#doctor-status").textContent = "the doctor could not answer: " + e.message;
    $("#doctor-status").className = "error";
    document.body.dataset.ready = "error";
  }
}

document.addEventListener("DOMContentLoaded", load);
