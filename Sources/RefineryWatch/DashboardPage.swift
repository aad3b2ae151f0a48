/// The dashboard's web page: one self-contained HTML document (inline style and script, nothing
/// fetched from elsewhere) that polls `api/status` and `api/train` every two seconds and draws the
/// run: stage and chunk progress, requests, tokens and dollars, curation calls, training curves
/// (loss per step, eval loss) with how to read them, workers with their state and last heartbeat,
/// and failures. A `?token=` in the page's address is passed on to its requests.
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
.guide { max-width: 52em; color: #48525e; }
</style>
</head>
<body>
<h1>Refinery run — <span id="stage">…</span></h1>
<div class="cards">
  <div class="card">chunks<b id="chunks">…</b><div class="bar"><div id="progress" style="width:0%"></div></div></div>
  <div class="card">requests<b id="requests">…</b><span id="rate"></span></div>
  <div class="card">tokens<b id="tokens">…</b></div>
  <div class="card">cost<b id="cost">…</b></div>
  <div class="card">training<b id="step">–</b><span id="trainline"></span></div>
</div>
<h2>Training</h2>
<svg id="chart" width="720" height="260" role="img" aria-label="loss per step"></svg>
<p class="guide">Blue: training loss per step; orange: eval loss. A healthy run's loss falls quickly, then
flattens. Eval loss that turns upward while the training loss keeps falling means the model is
overfitting: stop earlier, lower the learning rate or add data. Sudden spikes in the gradient norm
(shown with each step) warn of an unstable learning rate.</p>
<h2>LLM requests by outcome</h2>
<table id="outcomes"><tr><th>outcome</th><th>requests</th></tr></table>
<h2>Curation calls</h2>
<table id="calls"><tr><th>purpose</th><th>outcome</th><th>calls</th><th>cost</th></tr></table>
<h2>Workers</h2>
<table id="workers"><tr><th>worker</th><th>host</th><th>state</th><th>slots</th><th>tasks done</th><th>last heartbeat</th></tr></table>
<h2>Failures</h2>
<ul id="failures"></ul>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
const query = token ? "?token=" + encodeURIComponent(token) : "";
function text(id, value) { document.getElementById(id).textContent = value; }
function cell(row, value, className) { const td = row.insertCell(); td.textContent = value; if (className) td.className = className; }
function clearRows(table) { while (table.rows.length > 1) table.deleteRow(1); }
function chart(rows) {
  const svg = document.getElementById("chart"), ns = "http://www.w3.org/2000/svg";
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const train = rows.filter(r => r.loss !== undefined), evals = rows.filter(r => r.eval_loss !== undefined);
  const all = train.map(r => r.loss).concat(evals.map(r => r.eval_loss));
  if (all.length === 0) return;
  const steps = rows.map(r => r.step), low = Math.min(...all), high = Math.max(...all);
  const first = Math.min(...steps), last = Math.max(...steps);
  const x = s => 40 + (last > first ? (s - first) / (last - first) : 0.5) * 660;
  const y = v => 240 - (high > low ? (v - low) / (high - low) : 0.5) * 220;
  for (const [points, key, className] of [[train, "loss", "loss"], [evals, "eval_loss", "eval"]]) {
    for (const r of points) {
      const c = document.createElementNS(ns, "circle");
      c.setAttribute("cx", x(r.step)); c.setAttribute("cy", y(r[key])); c.setAttribute("r", 3); c.setAttribute("class", className);
      const title = document.createElementNS(ns, "title");
      title.textContent = "step " + r.step + ": " + key + " " + r[key].toFixed(4) + (r.grad_norm !== undefined ? ", grad norm " + r.grad_norm.toFixed(3) : "");
      c.appendChild(title); svg.appendChild(c);
    }
  }
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", 40); label.setAttribute("y", 255); label.textContent = "steps " + first + "–" + last + ", loss " + low.toFixed(3) + "–" + high.toFixed(3);
  svg.appendChild(label);
}
function render(s, rows) {
  const finished = s.stage === "done" || s.stage === "stopped";
  text("stage", s.stage + (s.stopped_reason ? " (" + s.stopped_reason + ")" : ""));
  text("chunks", s.chunks.done + " / " + s.chunks.total + (s.chunks.failed ? ", " + s.chunks.failed + " failed" : ""));
  document.getElementById("progress").style.width = (s.chunks.total ? 100 * s.chunks.done / s.chunks.total : 0) + "%";
  text("requests", s.requests); text("rate", (s.requests_last_minute / 60).toFixed(2) + "/s over the last minute");
  text("tokens", s.prompt_tokens + " + " + s.completion_tokens); text("cost", "$" + s.cost.toFixed(4));
  const last = s.training.last;
  text("step", last ? "step " + last.step : "–");
  text("trainline", last ? "loss " + last.loss.toFixed(4) + ", grad norm " + last.grad_norm.toFixed(3) + ", lr " + last.lr.toExponential(2) : "");
  chart(rows);
  const outcomes = document.getElementById("outcomes"); clearRows(outcomes);
  for (const [outcome, count] of Object.entries(s.requests_by_outcome || {})) { const r = outcomes.insertRow(); cell(r, outcome); cell(r, count); }
  const calls = document.getElementById("calls"); clearRows(calls);
  for (const c of s.curation_calls) { const r = calls.insertRow(); cell(r, c.purpose); cell(r, c.status); cell(r, c.calls); cell(r, "$" + c.cost.toFixed(4)); }
  const workers = document.getElementById("workers"); clearRows(workers);
  const now = Date.now() / 1000;
  for (const w of s.workers) {
    const r = workers.insertRow(), gone = w.state !== "connected";
    cell(r, w.id); cell(r, w.host);
    cell(r, gone ? (finished ? "left" : "lost") : "connected", gone && !finished ? "lost" : "connected");
    cell(r, w.slots); cell(r, w.tasks_done); cell(r, Math.max(0, Math.round(now - w.last_seen)) + " s ago");
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
