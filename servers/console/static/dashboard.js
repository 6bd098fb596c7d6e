// The live dashboard: /api/v1/dashboard every 2 s, figures and tables updated in place,
// the chart drawn as inline SVG (a few lines here: no charting library to vendor).
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const W = 600, H = 160, PAD = 18;

function el(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function path(points, key, top, t0, t1) {
  return points.map((p, i) => {
    const x = t1 > t0 ? ((p.at_ms - t0) / (t1 - t0)) * W : 0;
    const y = H - PAD - (p[key] / top) * (H - 2 * PAD);
    return (i ? "L" : "M") + x.toFixed(1) + "," + y.toFixed(1);
  }).join(" ");
}

function drawChart(history) {
  const svg = document.getElementById("chart");
  svg.replaceChildren();
  svg.append(el("line", {x1: 0, y1: H - PAD, x2: W, y2: H - PAD, class: "axis"}));
  if (history.length < 2) return;
  const top = Math.max(1, ...history.map(p => Math.max(p.registrations_per_s, p.refusals_per_s)));
  const t0 = history[0].at_ms, t1 = history[history.length - 1].at_ms;
  svg.append(el("text", {x: 2, y: 12}, top.toFixed(1) + "/s"));
  const span = (t1 - t0) / 1000;
  const label = span < 120 ? Math.round(span) + " s" : Math.round(span / 60) + " min";
  svg.append(el("text", {x: 2, y: H - 4}, "last " + label));
  svg.append(el("path", {d: path(history, "registrations_per_s", top, t0, t1), class: "reg"}));
  svg.append(el("path", {d: path(history, "refusals_per_s", top, t0, t1), class: "ref"}));
}

function rows(tbody, entries) {
  tbody.replaceChildren(...entries.map(cells => {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = c;
      tr.append(td);
    }
    return tr;
  }));
}

function seconds(ms) {
  return (ms / 1000).toFixed(1) + " s";
}

async function refresh() {
  try {
    const answer = await fetch("/api/v1/dashboard", {credentials: "same-origin"});
    if (answer.status === 401) { location.href = "/login"; return; }
    if (!answer.ok) return;
    const d = await answer.json();
    document.getElementById("registrations-total").textContent = Math.round(d.registrations_total);
    document.getElementById("registrations-rate").textContent = d.registrations_per_s.toFixed(1);
    document.getElementById("refusals-total").textContent = Math.round(d.refusals_total);
    document.getElementById("refusals-rate").textContent = d.refusals_per_s.toFixed(1);
    rows(document.getElementById("refusals"),
         Object.entries(d.refusals).sort().map(([k, v]) => [k, Math.round(v)]));
    rows(document.getElementById("registrations"),
         Object.entries(d.registrations).sort().map(([k, v]) => [k, Math.round(v)]));
    rows(document.getElementById("nodes"), d.nodes.map(n => [
      n.node_id, n.host + ":" + n.port, n.load + "/s", seconds(n.lease_age_ms),
      n.live ? "live" : "lapsed"]));
    drawChart(d.history);
  } catch (e) {
    // the next round tries again
  }
}

document.addEventListener("DOMContentLoaded", () => {
  refresh();
  setInterval(refresh, 2000);
});
