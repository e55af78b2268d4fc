// The review page of pyimgano serve: plain JavaScript, no build step, nothing fetched from elsewhere.
"use strict";

const state = { model: null };
const $ = (id) => document.getElementById(id);

function headers() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

function setStatus(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

async function failure(response) {
  try {
    const body = await response.json();
    return `${response.status}: ${body.error || body.detail || response.statusText}`;
  } catch (e) {
    return `${response.status}: ${response.statusText}`;
  }
}

async function loadModel() {
  const response = await fetch("v1/model", { headers: headers() });
  if (!response.ok) {
    $("model").textContent = response.status === 401 ? "enter the API key to see the model" : await failure(response);
    return;
  }
  state.model = await response.json();
  const m = state.model;
  const threshold = m.image_threshold && m.image_threshold.value;
  $("model").textContent = `${m.detector} from ${m.model_dir}; image threshold ` +
    (threshold == null ? "none" : fmt(threshold)) + `; ${(m.calibration.normal_scores || []).length} calibration scores`;
}

function fmt(x) {
  if (x == null) return "-";
  return Math.abs(x) >= 1000 || (Math.abs(x) < 0.01 && x !== 0) ? x.toExponential(3) : x.toFixed(4);
}

async function score(files) {
  if (!files.length) return;
  if (!state.model) await loadModel();
  const form = new FormData();
  for (const file of files) form.append("image", file, file.name);
  setStatus(`scoring ${files.length} image(s)...`);
  let response;
  try {
    response = await fetch("v1/predict?maps=true", { method: "POST", body: form, headers: headers() });
  } catch (e) {
    setStatus(`the service did not answer: ${e}`, true);
    return;
  }
  if (!response.ok) {
    setStatus(await failure(response), true);
    return;
  }
  const answer = await response.json();
  const cards = answer.images.map((item, i) => show(item, files[i]));
  $("results").prepend(...cards);  // the newest request on top, its images in upload order
  const flagged = answer.images.filter((item) => item.label === 1).length;
  setStatus(`${answer.images.length} image(s) scored, ${flagged} anomalous`);
}

function element(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}

function show(item, file) {
  const card = element("section", { class: "result" });
  const verdict = item.label === 1 ? ["anomalous", "ANOMALOUS"] : item.label === 0 ? ["ok", "OK"] : ["unknown", "NO THRESHOLD"];
  const title = element("h2");
  title.append(element("span", { class: `verdict ${verdict[0]}` }, verdict[1]), ` ${item.name}`);
  card.append(title);

  const picture = element("div", { class: "picture" });
  const original = URL.createObjectURL(file);
  const img = element("img", { alt: `heatmap of ${item.name}`, class: item.heatmap_png ? "heatmap" : "original" });
  img.src = item.heatmap_png ? `data:image/png;base64,${item.heatmap_png}` : original;
  picture.append(img);
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", `0 0 ${item.width} ${item.height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  for (const region of item.regions.slice(0, 50)) {
    const rect = document.createElementNS(svgNS, "rect");
    const [x, y, w, h] = region.bbox;
    Object.entries({ x, y, width: w, height: h, class: "region" }).forEach(([k, v]) => rect.setAttribute(k, v));
    svg.append(rect);
  }
  picture.append(svg);
  const left = element("div");
  left.append(picture);
  if (item.heatmap_png) {
    const toggle = element("button", { type: "button" }, "show the image");
    toggle.onclick = () => {
      const heat = img.classList.toggle("heatmap");
      img.src = heat ? `data:image/png;base64,${item.heatmap_png}` : original;
      toggle.textContent = heat ? "show the image" : "show the heatmap";
    };
    left.append(toggle);
  }
  card.append(left);

  const right = element("div");
  const facts = element("table", { class: "facts" });
  const rows = [
    ["score", fmt(item.score)], ["image threshold", fmt(item.image_threshold)], ["margin", fmt(item.margin)],
    ["p-value", item.p_value == null ? "-" : item.p_value.toFixed(3)],
    ["anomalous pixels", item.anomalous_fraction == null ? "-" : `${(100 * item.anomalous_fraction).toFixed(2)} %`],
    ["regions", String(item.regions.length)], ["size", `${item.width} x ${item.height}`],
  ];
  for (const [k, v] of rows) {
    const tr = element("tr");
    tr.append(element("th", {}, k), element("td", {}, v));
    facts.append(tr);
  }
  right.append(facts);
  if (item.regions.length) {
    const regions = element("table", { class: "regions" });
    const head = element("tr");
    ["#", "x, y", "width x height", "area", "peak"].forEach((h) => head.append(element("th", {}, h)));
    regions.append(head);
    item.regions.slice(0, 10).forEach((r, i) => {
      const tr = element("tr");
      [String(i + 1), `${r.bbox[0]}, ${r.bbox[1]}`, `${r.bbox[2]} x ${r.bbox[3]}`, String(r.area), fmt(r.peak)]
        .forEach((v) => tr.append(element("td", {}, v)));
      regions.append(tr);
    });
    right.append(regions);
  }
  const canvas = element("canvas", { class: "histogram", width: 460, height: 150 });
  right.append(canvas);
  right.append(element("p", { class: "legend" },
    "grey: scores of the normal calibration images; red line: the image threshold; blue: this image"));
  card.append(right);
  drawHistogram(canvas, item);
  return card;
}

function drawHistogram(canvas, item) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, pad = 18;
  const scores = (state.model && state.model.calibration.normal_scores) || [];
  const marks = [item.score, item.image_threshold].filter((v) => v != null);
  const values = scores.concat(marks);
  let lo = Math.min(...values), hi = Math.max(...values);
  if (!(hi > lo)) { lo -= 1; hi += 1; }
  const span = hi - lo; lo -= 0.05 * span; hi += 0.05 * span;
  const x = (v) => pad + (W - 2 * pad) * (v - lo) / (hi - lo);
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  if (scores.length) {
    const bins = 30, counts = new Array(bins).fill(0);
    for (const s of scores) counts[Math.min(bins - 1, Math.floor(bins * (s - lo) / (hi - lo)))] += 1;
    const top = Math.max(...counts);
    ctx.fillStyle = "#9aa6b2";
    counts.forEach((c, i) => {
      const h = (H - 2 * pad) * c / top, bx = pad + (W - 2 * pad) * i / bins;
      ctx.fillRect(bx, H - pad - h, (W - 2 * pad) / bins - 1, h);
    });
  } else {
    ctx.fillStyle = "#4a5765"; ctx.font = "12px sans-serif";
    ctx.fillText("this model kept no calibration scores", pad, pad + 12);
  }
  const line = (v, colour, dash) => {
    ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.setLineDash(dash);
    ctx.beginPath(); ctx.moveTo(x(v), 4); ctx.lineTo(x(v), H - pad); ctx.stroke(); ctx.setLineDash([]);
  };
  if (item.image_threshold != null) line(item.image_threshold, "#b3261e", [5, 3]);
  line(item.score, "#2f6fde", []);
  ctx.fillStyle = "#1d2733"; ctx.font = "11px sans-serif";
  ctx.fillText(fmt(lo), pad, H - 4);
  const right = fmt(hi);
  ctx.fillText(right, W - pad - ctx.measureText(right).width, H - 4);
}

function setUp() {
  const drop = $("drop");
  $("file-input").addEventListener("change", (e) => score(Array.from(e.target.files)));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    score(Array.from(e.dataTransfer.files).filter((f) => f.type.startsWith("image/") || /\.(png|jpe?g|bmp|tiff?|webp)$/i.test(f.name)));
  });
  const saved = sessionStorage.getItem("pyimgano-api-key");
  if (saved) $("api-key").value = saved;
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem("pyimgano-api-key", $("api-key").value.trim());
    loadModel();
  });
  loadModel();
}

setUp();
