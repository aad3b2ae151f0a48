/// The dashboard's web page: one self-contained HTML document (inline style and script, nothing
/// fetched from elsewhere) that polls `api/status` and `api/train` every two seconds and draws the
/// run: stage and chunk progress with pace and ETA, requests, tokens and dollars against the
/// budget, errors by class, curation stages' kept/dropped counts and calls, training curves (loss
/// and eval loss, gradient norm, learning rate, tokens/s per step) with how to read them and the
/// training ETA, workers with their state, throughput, held tasks and last heartbeat, and failures. A `?token=` in the page's address is passed on to its requests.
enum DashboardPage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Refinery run</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em; color: #1d232b; background: #fafbfc; }
h1 { font-size: 1.3em; margin: 0 0 .6em; } h2 { font-size: 1.05em; margin: 1.4em 0 .4em; }
.cards { display: flex; flex-wrap: wrap; gap: .8em; }
.card { background: #fff; border: 1px solid #dde2e8; border-radius: 6px; padding: .6em .9em; min-width: 9em; }
.card b { display: block; font-size: 1.25em; }
.bar { height: 10px; background: #e6eaef; border-radius: 5px; overflow: hidden; width: 24em; }
.bar > div { height: 100%; background: #3b7dd8; }
table { border-collapse: collapse; background: #fff; } td, th { border: 1px solid #dde2e8; padding: .25em .6em; text-align: left; }
.lost { color: #b3261e; font-weight: 600; } .connected { color: #1b7f3b; }
svg { background: #fff; border: 1px solid #dde2e8; } .loss { fill: #3b7dd8; } .eval { fill: #d9822b; }
.gnorm { fill: #7a4fc2; } .lr { fill: #1b7f3b; } .tps { fill: #48525e; }
polyline { fill: none; stroke-width: 1.2; stroke: #9fb3c8; } .small svg { margin-right: .6em; }
table + table { margin-top: .6em; }
.guide { max-width: 52em; color: #48525e; }
</style>
</head>
<body>
<h1>Refinery run — <span id="stage">…</span></h1>
<div class="cards">
  <div class="card">chunks<b id="chunks">…</b><div class="bar"><div id="progress" style="width:0%"></div></div><span id="chunkpace"></span></div>
  <div class="card">requests<b id="requests">…</b><span id="rate"></span></div>
  <div class="card">tokens<b id="tokens">…</b></div>
  <div class="card">spent<b id="cost">…</b><div class="bar"><div id="budgetbar" style="width:0%"></div></div><span id="budget"></span></div>
  <div class="card">training<b id="step">–</b><span id="trainline"></span><br><span id="trainpace"></span></div>
</div>
<h2>Training</h2>
<svg id="chart" width="720" height="260" role="img" aria-label="loss per step"></svg>
<p class="guide">Blue: training loss per step; orange: eval loss. A healthy run's loss falls quickly, then
flattens. Eval loss that turns upward while the training loss keeps falling means the model is
overfitting: stop earlier, lower the learning rate or add data. Sudden spikes in the gradient norm
warn of an unstable learning rate; the learning rate follows its schedule (warm-up, then decay).</p>
<div class="small">
<svg id="gnormchart" width="350" height="150" role="img" aria-label="gradient norm per step"></svg>
<svg id="lrchart" width="350" height="150" role="img" aria-label="learning rate per step"></svg>
<svg id="tpschart" width="350" height="150" role="img" aria-label="tokens per second per step"></svg>
</div>
<h2>Errors by class</h2>
<table id="errors"><tr><th>class</th><th>failed requests</th></tr></table>
<h2>LLM requests by outcome</h2>
<table id="outcomes"><tr><th>outcome</th><th>requests</th></tr></table>
<h2>Curation</h2>
<table id="stages"><tr><th>pipeline</th><th>stage</th><th>kept</th><th>dropped</th></tr></table>
<table id="calls"><tr><th>purpose</th><th>outcome</th><th>calls</th><th>cost</th></tr></table>
<h2>Workers</h2>
<table id="workers"><tr><th>worker</th><th>host</th><th>state</th><th>slots</th><th>tasks done</th><th>tasks/min</th><th>holds</th><th>last heartbeat</th></tr></table>
<h2>Failures</h2>
<ul id="failures"></ul>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
const query = token ? "?token=" + encodeURIComponent(token) : "";
const ns = "http://www.w3.org/2000/svg";
function text(id, value) { document.getElementById(id).textContent = value; }
function cell(row, value, className) { const td = row.insertCell(); td.textContent = value; if (className) td.className = className; }
function clearRows(table) { while (table.rows.length > 1) table.deleteRow(1); }
function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
  const s = Math.round(seconds);
  return s >= 3600 ? Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m" : s >= 60 ? Math.floor(s / 60) + "m" + (s % 60) + "s" : s + "s";
}
// Draws series of [step, value] points into an SVG: one circle per point (class per series), a line through them.
function plot(id, series, caption) {
  const svg = document.getElementById(id);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const all = series.flatMap(s => s.points);
  if (all.length === 0) return;
  const width = Number(svg.getAttribute("width")), height = Number(svg.getAttribute("height"));
  const steps = all.map(p => p[0]), values = all.map(p => p[1]);
  const first = Math.min(...steps), last = Math.max(...steps), low = Math.min(...values), high = Math.max(...values);
  const x = s => 40 + (last > first ? (s - first) / (last - first) : 0.5) * (width - 60);
  const y = v => height - 20 - (high > low ? (v - low) / (high - low) : 0.5) * (height - 40);
  for (const s of series) {
    if (s.points.length > 1) {
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", s.points.map(p => x(p[0]) + "," + y(p[1])).join(" "));
      line.setAttribute("class", s.className + "-line");
      svg.appendChild(line);
    }
    for (const p of s.points) {
      const c = document.createElementNS(ns, "circle");
      c.setAttribute("cx", x(p[0])); c.setAttribute("cy", y(p[1])); c.setAttribute("r", 3); c.setAttribute("class", s.className);
      const title = document.createElementNS(ns, "title");
      title.textContent = "step " + p[0] + ": " + s.name + " " + s.format(p[1]);
      c.appendChild(title); svg.appendChild(c);
    }
  }
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", 40); label.setAttribute("y", height - 5);
  label.textContent = caption + ": steps " + first + "–" + last + ", " + series[0].format(low) + "–" + series[0].format(high);
  svg.appendChild(label);
}
function charts(rows) {
  const train = rows.filter(r => r.loss !== undefined), evals = rows.filter(r => r.eval_loss !== undefined);
  const fixed = d => v => v.toFixed(d);
  plot("chart", [{ name: "loss", className: "loss", points: train.map(r => [r.step, r.loss]), format: fixed(4) },
                 { name: "eval loss", className: "eval", points: evals.map(r => [r.step, r.eval_loss]), format: fixed(4) }], "loss");
  plot("gnormchart", [{ name: "grad norm", className: "gnorm", points: train.filter(r => r.grad_norm !== undefined).map(r => [r.step, r.grad_norm]), format: fixed(3) }], "gradient norm");
  plot("lrchart", [{ name: "lr", className: "lr", points: train.filter(r => r.lr !== undefined).map(r => [r.step, r.lr]), format: v => v.toExponential(2) }], "learning rate");
  const rates = [];
  for (let i = 1; i < train.length; i++) {
    const a = train[i - 1], b = train[i];
    if (b.step === a.step + 1 && a.time !== undefined && b.time !== undefined && b.time > a.time) rates.push([b.step, b.tokens / (b.time - a.time)]);
  }
  plot("tpschart", [{ name: "tokens/s", className: "tps", points: rates, format: fixed(0) }], "tokens/s");
}
function render(s, rows) {
  const finished = s.stage === "done" || s.stage === "stopped";
  text("stage", s.stage + (s.stopped_reason ? " (" + s.stopped_reason + ")" : ""));
  text("chunks", s.chunks.done + " / " + s.chunks.total + (s.chunks.failed ? ", " + s.chunks.failed + " failed" : ""));
  document.getElementById("progress").style.width = (s.chunks.total ? 100 * s.chunks.done / s.chunks.total : 0) + "%";
  text("chunkpace", s.pace.chunks_last_minute + " chunks/min" + (s.eta_seconds.generate !== null ? ", eta " + duration(s.eta_seconds.generate) : ""));
  text("requests", s.requests); text("rate", (s.requests_last_minute / 60).toFixed(2) + "/s over the last minute" + (s.pace.calls_last_minute ? ", " + s.pace.calls_last_minute + " curation calls/min" : ""));
  text("tokens", s.prompt_tokens + " + " + s.completion_tokens); text("cost", "$" + s.spent.toFixed(4));
  text("budget", s.budget !== null ? "of a $" + s.budget.toFixed(2) + " budget" : "no budget set");
  document.getElementById("budgetbar").style.width = (s.budget ? Math.min(100, 100 * s.spent / s.budget) : 0) + "%";
  const t = s.training, last = t.last;
  text("step", last ? "step " + last.step + (t.total_steps ? " / " + t.total_steps : "") : "–");
  text("trainline", last ? "loss " + last.loss.toFixed(4) + ", grad norm " + last.grad_norm.toFixed(3) + ", lr " + last.lr.toExponential(2) : "");
  text("trainpace", (t.tokens_per_second !== null ? Math.round(t.tokens_per_second) + " tokens/s" : "") +
                    (t.step_seconds !== null ? ", " + t.step_seconds.toFixed(1) + " s/step" : "") +
                    (s.eta_seconds.train !== null ? ", eta " + duration(s.eta_seconds.train) : ""));
  charts(rows);
  const errors = document.getElementById("errors"); clearRows(errors);
  for (const [name, count] of Object.entries(s.errors_by_class || {})) { const r = errors.insertRow(); cell(r, name); cell(r, count); }
  const outcomes = document.getElementById("outcomes"); clearRows(outcomes);
  for (const [outcome, count] of Object.entries(s.requests_by_outcome || {})) { const r = outcomes.insertRow(); cell(r, outcome); cell(r, count); }
  const stages = document.getElementById("stages"); clearRows(stages);
  for (const c of s.curation_stages) { const r = stages.insertRow(); cell(r, c.pipeline); cell(r, c.name); cell(r, c.kept); cell(r, c.dropped); }
  const calls = document.getElementById("calls"); clearRows(calls);
  for (const c of s.curation_calls) { const r = calls.insertRow(); cell(r, c.purpose); cell(r, c.status); cell(r, c.calls); cell(r, "$" + c.cost.toFixed(4)); }
  const workers = document.getElementById("workers"); clearRows(workers);
  for (const w of s.workers) {
    const r = workers.insertRow(), gone = w.state !== "connected";
    cell(r, w.id); cell(r, w.host);
    cell(r, gone ? (finished ? "left" : "lost") : "connected", gone && !finished ? "lost" : "connected");
    cell(r, w.slots); cell(r, w.tasks_done); cell(r, w.tasks_per_minute.toFixed(1));
    cell(r, w.holds.length ? w.holds.slice(0, 3).join(", ") + (w.holds.length > 3 ? " +" + (w.holds.length - 3) : "") : "–");
    cell(r, Math.max(0, Math.round(s.read_at - w.last_seen)) + " s ago");
  }
  const failures = document.getElementById("failures"); failures.textContent = "";
  for (const f of s.failures) { const li = document.createElement("li"); li.textContent = "chunk " + f.chunk + ": " + f.reason; failures.appendChild(li); }
}
async function refresh() {
  try {
    const [s, rows] = await Promise.all([fetch("api/status" + query).then(r => r.json()), fetch("api/train" + query).then(r => r.json())]);
    render(s, rows);
    document.body.dataset.ready = "1";
    delete document.body.dataset.errors;
  } catch (error) {
    document.body.dataset.errors = String(error);
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""#
}
