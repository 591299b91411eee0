// The Tweezer dashboard (api/dashboard.py): plain JavaScript, no build step, nothing fetched
// from elsewhere. It calls the API with the user's own token, so it sees what the API lets that
// user see. Every value it shows goes in with textContent: nothing is parsed as HTML.
"use strict";

const TOKEN_KEY = "tweezer.token";
const REFRESH_MS = 3000;
let timer = null;
let shownResults = null; // the batch whose results links are listed

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells, attributes) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.appendChild(cell instanceof Node ? cell : el("td", cell));
  for (const [name, value] of Object.entries(attributes || {})) tr.setAttribute(name, value);
  return tr;
}

function fill(tableId, rows) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren(...rows);
}

function seconds(value) {
  if (value === null || value === undefined) return "-";
  const s = Math.round(value);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function since(iso, until) {
  if (!iso) return null;
  const end = until ? Date.parse(until) : Date.now();
  return (end - Date.parse(iso)) / 1000;
}

function time(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "-";
}

async function api(path, options) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = Object.assign({ Authorization: `Bearer ${token}` }, (options || {}).headers);
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    logout("Your session ended: log in again.");
    throw new Error("unauthorized");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
  return body.data;
}

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  let token = $("token").value.trim();
  if (!token) {
    const form = new URLSearchParams({
      grant_type: "password",
      username: $("username").value,
      password: $("password").value,
    });
    const response = await fetch("/oauth/token", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) {
      $("login-error").textContent = body.error_description || body.message || "Login failed";
      return;
    }
    token = body.access_token;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("password").value = "";
  $("token").value = "";
  start();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (timer) clearInterval(timer);
  timer = null;
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("who").textContent = "";
  $("login-error").textContent = message || "";
}

function start() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

async function refresh() {
  try {
    const overview = await api("/dashboard/api/overview");
    $("who").textContent =
      `${overview.viewer.user_id}${overview.viewer.admin ? " (administrator)" : ""}`;
    drawQpus(overview);
    drawQueue(overview);
    drawSessions(overview);
    drawBatches(await api("/core-fast/api/v1/batches?limit=50"));
    $("admin").hidden = !overview.viewer.admin;
    if (overview.viewer.admin) {
      drawUsage(await api("/admin/api/v1/usage"));
      drawAudit(await api("/admin/api/v1/audit?limit=30"));
    }
    $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}, every 3 s. ` +
      `Policy: ${overview.policy}. ${overview.jobs_per_s} jobs/s over the last minute.`;
  } catch (error) {
    if (error.message !== "unauthorized") {
      $("updated").textContent = `Update failed: ${error.message}`;
    }
  }
}

function drawQpus(overview) {
  fill("qpus", overview.qpus.map((qpu) => {
    const b = qpu.batch;
    const lost = qpu.workers.length - qpu.workers_alive;
    const workers = `${qpu.workers_alive} alive${lost ? `, ${lost} lost` : ""}`;
    let batch = "-", owner = "-", jobs = "-", shots = "-";
    if (b && b.hidden) {
      batch = "another project's";
    } else if (b) {
      batch = b.id;
      owner = `${b.project_id} / ${b.user_id}`;
      jobs = `${b.jobs_done} / ${b.jobs_total}`;
      shots = `${b.runs_done} / ${b.runs_total}`;
      if (b.idle_held_s !== null) jobs += ` (open, idle ${seconds(b.idle_held_s)})`;
    }
    return row([
      el("td", qpu.name),
      el("td", qpu.state, `state-${qpu.state}`),
      el("td", qpu.device_status),
      el("td", batch, "id"),
      el("td", owner),
      el("td", jobs),
      el("td", shots),
      el("td", workers),
    ], { "data-qpu": qpu.name });
  }));
}

function drawQueue(overview) {
  fill("queue", overview.queue.map((level) => row([
    level.device_type, level.priority, level.batches, seconds(level.oldest_waiting_s),
  ])));
}

function drawSessions(overview) {
  // Sessions of Slurm jobs through qrmi's pasqal-local path, of the projects one sees.
  fill("sessions", overview.sessions.map((s) => row([
    s.slurm_job_id, s.user_id, s.device_type, time(s.since), s.batch_id || "-",
  ], { "data-session-id": s.id })));
}

function drawBatches(batches) {
  fill("batches", batches.map((b) => {
    const counts = b.jobs_count_per_status || {};
    const done = (counts.DONE || 0) + (counts.ERROR || 0) + (counts.CANCELED || 0);
    const wait = since(b.created_at, b.start_datetime);
    const eta = b.status === "PENDING" ? b.estimated_start_at
      : b.status === "RUNNING" ? b.estimated_end_at : b.end_datetime;
    const results = el("td");
    const link = el("button", "results", "results");
    link.type = "button";
    link.addEventListener("click", () => showResults(b.id));
    results.appendChild(link);
    return row([
      el("td", b.id, "id"),
      el("td", b.status, `status status-${b.status}`),
      el("td", b.device_type),
      el("td", `${done} / ${b.jobs_count}`),
      el("td", seconds(wait)),
      el("td", eta ? `${etaWord(b.status)} ${time(eta)}` : "-"),
      el("td", (b.tags || []).join(", ")),
      results,
    ], { "data-batch-id": b.id });
  }));
}

function etaWord(status) {
  if (status === "PENDING") return "starts";
  return status === "RUNNING" ? "ends" : "ended";
}

async function showResults(batchId) {
  shownResults = batchId;
  $("results").hidden = false;
  $("results-title").textContent = `Results of batch ${batchId}`;
  const jobs = await api(`/core-fast/api/v2/jobs?batch_id=${encodeURIComponent(batchId)}&limit=100`);
  const items = [];
  for (const job of jobs) {
    const item = el("li");
    item.appendChild(el("span", `job ${job.id}: ${job.status} `));
    if (job.status === "DONE") {
      const path = `/core-fast/api/v1/jobs/${encodeURIComponent(job.id)}/results_link`;
      const { results_link: url } = await api(path);
      if (typeof url === "string" && /^https?:\/\//.test(url)) {
        const a = el("a", "download");
        a.href = url;
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        item.appendChild(a);
      }
    }
    for (const error of job.errors || []) item.appendChild(el("pre", error, "error"));
    items.push(item);
  }
  if (shownResults === batchId) $("results-links").replaceChildren(...items);
}

function drawUsage(projects) {
  fill("usage", projects.map((p) => row([
    p.name, p.queue_priority, p.share, p.unfinished_jobs, p.open_batches,
    `${(p.stored_bytes / 1e6).toFixed(1)} MB`,
    Object.entries(p.qpu_seconds).map(([type, s]) => `${type} ${s.toFixed(1)}`).join(", "),
  ], { "data-project-id": p.project_id })));
}

function drawAudit(entries) {
  fill("audit", entries.map((e) => row([
    time(e.at), e.actor, e.action, e.project_id || "-", JSON.stringify(e.detail || {}),
  ])));
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => logout());
  if (sessionStorage.getItem(TOKEN_KEY)) start();
});
