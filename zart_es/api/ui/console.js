// The zart-es console: a page per view, every read and every change one call of the HTTP API
// (the same routes, and so the same Client calls, as any other caller). No framework, no
// build step. User data is only ever put into the page as text, never as HTML.

import { executionPage } from "./execution.js";

const TOKEN_KEY = "zart-es.token";
const OPERATOR_KEY = "zart-es.operator";
const REFRESH_MS = 3000;
const BASE = new URL("../", location.href); // the API serves the console under /ui/

// -- the API -----------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let signingIn = null;

/** One API call; a 401 asks for the token (once for all callers) and tries again. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(new URL(path.replace(/^\//, ""), BASE), init);
  if (res.status === 401) {
    await signIn(token ? "That token was refused." : "");
    return api(method, path, body);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    // our errors are {code, message}; problem details carry {code, detail, title}
    const message = (data && (data.message || data.detail || data.title)) || text || res.statusText;
    throw new ApiError(res.status, data && data.code, message);
  }
  return data;
}

export function operator() {
  return sessionStorage.getItem(OPERATOR_KEY) || "";
}

function signIn(problem) {
  if (signingIn) return signingIn;
  const dialog = document.getElementById("login");
  const error = document.getElementById("login-error");
  error.textContent = problem;
  error.hidden = !problem;
  document.getElementById("login-operator").value = operator();
  signingIn = new Promise((resolve) => {
    const form = document.getElementById("login-form");
    form.onsubmit = () => {
      sessionStorage.setItem(TOKEN_KEY, document.getElementById("login-token").value.trim());
      sessionStorage.setItem(OPERATOR_KEY, document.getElementById("login-operator").value.trim());
      document.getElementById("login-token").value = "";
      signingIn = null;
      showWho();
      resolve();
    };
    dialog.oncancel = (e) => e.preventDefault(); // nothing to show without a token
  });
  dialog.showModal();
  return signingIn;
}

function showWho() {
  const who = operator();
  document.getElementById("whoami").textContent = who ? `signed in as ${who}` : "";
  document.getElementById("logout").hidden = !sessionStorage.getItem(TOKEN_KEY);
}

// -- building the page ----------------------------------------------------------------------

/** An element: h("a", {href: "#/x", class: "y"}, "text", child, ...). Strings become text. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function badge(status) {
  return h("span", { class: `badge ${status}`, "data-status": status }, status);
}

export function when(ms) {
  if (!ms) return "";
  return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
}

export function duration(ms) {
  if (ms < 10) return `${ms.toFixed(1)}ms`;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60000) return `${(ms / 1000).toPrecision(3).replace(/\.?0+$/, "")}s`;
  const minutes = Math.floor(ms / 60000);
  const seconds = Math.floor((ms % 60000) / 1000);
  if (minutes < 60) return `${minutes}m${String(seconds).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`;
}

export function json(value) {
  return h("pre", { class: "mono" }, JSON.stringify(value, null, 2));
}

export function executionLink(id) {
  return h("a", { href: `#/executions/${encodeURIComponent(id)}`, class: "mono" }, id);
}

export function toast(message, bad = false) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = bad ? "bad" : "";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, bad ? 8000 : 4000);
}

/**
 * Ask before a change: fields are {name, label, type: text|textarea|select, options, value}.
 * `run(values)` does the change; its error is shown in the dialog, which stays open.
 */
export function confirmAction({ title, text, fields = [], ok = "Confirm", danger = false, run }) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  const error = document.getElementById("confirm-error");
  error.hidden = true;
  const box = document.getElementById("confirm-fields");
  box.replaceChildren();
  const inputs = {};
  for (const field of fields) {
    let input;
    if (field.type === "select") {
      input = h("select", { name: field.name },
        field.options.map(([value, label]) => h("option", { value }, label)));
      if (field.value !== undefined) input.value = field.value;
    } else if (field.type === "textarea") {
      input = h("textarea", { name: field.name }, field.value || "");
    } else {
      input = h("input", { name: field.name, value: field.value || "", autocomplete: "off" });
    }
    inputs[field.name] = input;
    box.append(h("label", {}, field.label, input));
  }
  const okButton = document.getElementById("confirm-ok");
  okButton.textContent = ok;
  okButton.className = danger ? "primary danger" : "primary";
  document.getElementById("confirm-cancel").onclick = () => dialog.close();
  document.getElementById("confirm-form").onsubmit = async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(Object.entries(inputs).map(([k, el]) => [k, el.value]));
    okButton.disabled = true;
    try {
      const message = await run(values);
      dialog.close();
      toast(message || `${title}: done`);
      refreshNow(true);
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    } finally {
      okButton.disabled = false;
    }
  };
  dialog.showModal();
}

// -- pages --------------------------------------------------------------------------------

const STATUSES = ["pending", "running", "sleeping", "waiting", "paused", "quarantined",
  "completed", "failed", "cancelled", "timed_out"];

const listState = { status: "", name: "", prefix: "", after: "", before: "", limit: 50,
  cursors: [], cursor: null, selected: new Set() };

const BULK_ACTIONS = [["cancel", "cancel"], ["retry-step", "retry the failed step"],
  ["rerun", "rerun from steps"], ["restart", "restart"], ["release", "release"]];

/** Act on the selected executions: one bulk job (POST /admin/bulk), polled to its end. */
function bulkAction(ids) {
  confirmAction({
    title: `Act on ${ids.length} execution(s)`,
    text: `${ids.length} selected execution(s) get the operation one by one, each with its own event and trail entry; those it does not apply to are skipped.`,
    fields: [{ name: "action", label: "Action", type: "select", options: BULK_ACTIONS },
      { name: "steps", label: "Steps (rerun: comma-separated)" }, { name: "reason", label: "Reason" }],
    ok: "Run", danger: true,
    run: async (v) => {
      const steps = v.steps.split(",").map((s) => s.trim()).filter(Boolean);
      const started = await api("POST", `/admin/bulk/${v.action}`, { filter: { ids },
        steps: steps.length ? steps : null, reason: v.reason, by: operator() });
      let job = started;
      while (job.state === "running") {
        await new Promise((done) => setTimeout(done, 250));
        job = await api("GET", `/admin/bulk/${started.job}`);
      }
      listState.selected.clear();
      if (job.state !== "done") throw new Error(`bulk ${v.action} ${job.state}: ${job.error || ""}`);
      return `${v.action}: ${job.done} done, ${job.skipped} skipped, ${job.failed} failed of ${job.matched}`;
    },
  });
}

async function executionsPage(main) {
  const workflows = Object.keys((await api("GET", "/stats")).by_workflow || {});
  const filters = h("form", { class: "filters", id: "filters", onsubmit: (e) => e.preventDefault() },
    h("label", {}, "Status", h("select", { id: "filter-status" },
      h("option", { value: "" }, "any"), STATUSES.map((s) => h("option", { value: s }, s)))),
    h("label", {}, "Workflow", h("select", { id: "filter-name" },
      h("option", { value: "" }, "any"), workflows.map((w) => h("option", { value: w }, w)))),
    h("label", {}, "Id prefix", h("input", { id: "filter-prefix", placeholder: "order-", autocomplete: "off" })),
    h("label", {}, "Started after (UTC)", h("input", { id: "filter-after", type: "datetime-local", step: 1 })),
    h("label", {}, "Started before (UTC)", h("input", { id: "filter-before", type: "datetime-local", step: 1 })),
    h("label", {}, "Live", h("input", { id: "filter-live", type: "checkbox", checked: true })));
  const body = h("tbody", { id: "executions" });
  const pager = h("div", { class: "pager" });
  const actButton = h("button", { type: "button", id: "bulk-act", disabled: true,
    onclick: () => bulkAction([...listState.selected]) }, "Act on selected");
  const selectAll = h("input", { type: "checkbox", id: "select-all", title: "select every row shown",
    onchange: () => {
      for (const box of body.querySelectorAll("input.select-row")) {
        box.checked = selectAll.checked;
        if (box.checked) listState.selected.add(box.dataset.id); else listState.selected.delete(box.dataset.id);
      }
      showSelected();
    } });
  const showSelected = () => {
    actButton.disabled = listState.selected.size === 0;
    actButton.textContent = listState.selected.size ? `Act on ${listState.selected.size} selected` : "Act on selected";
  };
  main.replaceChildren(h("h1", {}, "Executions", actButton), filters,
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, selectAll), ["id", "workflow", "status", "created (UTC)",
      "updated (UTC)", "events"].map((c) => h("th", {}, c)))), body), pager);
  const status = filters.querySelector("#filter-status");
  const name = filters.querySelector("#filter-name");
  const prefix = filters.querySelector("#filter-prefix");
  const after = filters.querySelector("#filter-after");
  const before = filters.querySelector("#filter-before");
  const live = filters.querySelector("#filter-live");
  status.value = listState.status;
  name.value = listState.name;
  prefix.value = listState.prefix;
  after.value = listState.after;
  before.value = listState.before;
  const changed = () => {
    Object.assign(listState, { status: status.value, name: name.value,
      prefix: prefix.value.trim(), after: after.value, before: before.value,
      cursors: [], cursor: null });
    load().catch(showError);
  };
  status.onchange = changed;
  name.onchange = changed;
  prefix.oninput = changed;
  after.onchange = changed;
  before.onchange = changed;

  async function load() {
    const query = new URLSearchParams();
    if (listState.status) query.set("status", listState.status);
    if (listState.name) query.set("name", listState.name);
    // the id prefix filters what a page holds: read a large page while one is typed
    query.set("limit", String(listState.prefix ? 1000 : listState.limit));
    // the inputs hold UTC wall times: the API takes ISO 8601 with an offset
    if (listState.after) query.set("started_after", utc(listState.after));
    if (listState.before) query.set("started_before", utc(listState.before));
    if (listState.cursor) query.set("cursor", listState.cursor);
    const reply = await api("GET", `/executions?${query}`);
    const rows = Array.isArray(reply) ? reply : reply.items || reply.executions || [];
    const next = Array.isArray(reply) ? null : reply.next || null;
    const shown = rows.filter((r) => r.execution_id.startsWith(listState.prefix));
    const drawn = JSON.stringify([shown, next, listState.cursors.length, listState.limit,
      listState.selected.size]);
    if (drawn === body.dataset.drawn) return; // unchanged: leave the rows (and a click) be
    body.dataset.drawn = drawn;
    const pick = (id) => h("input", { type: "checkbox", class: "select-row", "data-id": id,
      checked: listState.selected.has(id), onchange: (e) => {
        if (e.target.checked) listState.selected.add(id); else listState.selected.delete(id);
        showSelected();
      } });
    body.replaceChildren(...shown.map((r) => h("tr", { "data-id": r.execution_id },
      h("td", {}, pick(r.execution_id)),
      h("td", {}, executionLink(r.execution_id)), h("td", {}, r.workflow),
      h("td", {}, badge(r.status)), h("td", {}, when(r.created_ms)),
      h("td", {}, when(r.updated_ms)), h("td", {}, r.version))));
    if (!shown.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No executions.")));
    showSelected();
    pager.replaceChildren(...[
      listState.cursors.length ? h("button", { type: "button", onclick: () => {
        listState.cursor = listState.cursors.pop() || null; load().catch(showError);
      } }, "Newer") : null,
      next ? h("button", { type: "button", id: "next-page", onclick: () => {
        listState.cursors.push(listState.cursor); listState.cursor = next; load().catch(showError);
      } }, "Older") : null,
      !next && !listState.prefix && rows.length >= listState.limit
        ? h("button", { type: "button", id: "more", onclick: () => { listState.limit += 50; load().catch(showError); } }, "Show more")
        : null,
      h("span", { class: "muted" }, `${shown.length} shown`)].filter(Boolean));
  }
  await load();
  return () => live.checked && load();
}

/** A datetime-local value (seconds left out when zero) as RFC 3339 in UTC. */
function utc(local) {
  return `${local.length === 16 ? `${local}:00` : local}Z`;
}

async function schedulesPage(main) {
  const schedules = await api("GET", "/schedules");
  const by = encodeURIComponent(operator());
  const act = (s, verb) => confirmAction({
    title: `${verb[0].toUpperCase()}${verb.slice(1)} schedule ${s.name}`,
    text: verb === "remove" ? "Executions it started are not touched." :
      verb === "pause" ? "Occurrences that fall while paused are not started, not even on resume." :
        "Occurrences from now on are started again.",
    ok: verb, danger: verb === "remove",
    run: async () => {
      if (verb === "remove") await api("DELETE", `/schedules/${encodeURIComponent(s.name)}?by=${by}`);
      else await api("POST", `/schedules/${encodeURIComponent(s.name)}/${verb}?by=${by}`);
      return `schedule ${s.name}: ${verb}d`;
    },
  });
  main.replaceChildren(h("h1", {}, "Schedules"), schedules.length ? h("table", {},
    h("thead", {}, h("tr", {}, ["name", "workflow", "when", "time zone", "overlap", "state",
      "next", "last started", ""].map((c) => h("th", {}, c)))),
    h("tbody", {}, schedules.map((s) => h("tr", { "data-schedule": s.name },
      h("td", {}, s.name), h("td", {}, s.workflow),
      h("td", { class: "mono" }, s.cron || `every ${duration(s.every_ms)}`),
      h("td", {}, s.timezone), h("td", {}, s.overlap),
      h("td", {}, badge(s.paused ? "paused" : "running")),
      h("td", { class: "mono" }, (s.next || []).join(", ")),
      h("td", {}, s.state && s.state.last_execution ? executionLink(s.state.last_execution) : ""),
      h("td", {}, h("div", { class: "actions" },
        h("button", { type: "button", onclick: () => act(s, s.paused ? "resume" : "pause") },
          s.paused ? "Resume" : "Pause"),
        h("button", { type: "button", class: "danger", onclick: () => act(s, "remove") }, "Remove")))))))
    : h("p", { class: "muted" }, "No schedules. Add one with `zart-es schedule add` or in code."));
}

export function pauseAction(kind, name, paused) {
  const by = operator();
  confirmAction(paused ? {
    title: `Resume ${kind} ${name}`,
    text: `Lift the pause rule ${kind}:${name}; the executions it held continue.`,
    ok: "Resume",
    run: async () => {
      const reply = await api("DELETE", `/admin/pauses/${kind}/${encodeURIComponent(name)}?by=${encodeURIComponent(by)}`);
      return `${reply.rule} lifted; ${reply.resumed} execution(s) resumed`;
    },
  } : {
    title: `Pause ${kind} ${name}`,
    text: `Executions of ${kind} ${name} stop at their next step boundary until resumed.`,
    fields: [{ name: "reason", label: "Reason" }],
    ok: "Pause", danger: true,
    run: async (v) => {
      const reply = await api("POST", "/admin/pauses", { [kind]: name, reason: v.reason, by });
      return reply.changed ? `${reply.rule} paused` : `${reply.rule} was already paused`;
    },
  });
}

async function pausesPage(main) {
  const rules = await api("GET", "/admin/pauses");
  const add = () => confirmAction({
    title: "Add a pause rule",
    text: "Executions of the workflow or queue, or the one execution, stop at their next step boundary until the rule is lifted; a step glob (charge-*) holds any execution before a matching step.",
    fields: [{ name: "kind", label: "Kind", type: "select", options: [["workflow", "workflow"], ["queue", "queue"],
      ["execution_id", "execution"], ["step", "step glob"]] },
      { name: "name", label: "Name" }, { name: "reason", label: "Reason" }],
    ok: "Pause", danger: true,
    run: async (v) => {
      const reply = await api("POST", "/admin/pauses", { [v.kind]: v.name, reason: v.reason, by: operator() });
      return reply.changed ? `${reply.rule} paused` : `${reply.rule} was already paused`;
    },
  });
  main.replaceChildren(h("h1", {}, "Pause rules",
    h("button", { type: "button", id: "add-pause", onclick: add }, "Add a rule")),
  rules.length ? h("table", {}, h("thead", {}, h("tr", {}, ["rule", "reason", "by", "since (UTC)", ""]
    .map((c) => h("th", {}, c)))), h("tbody", {}, rules.map((r) => h("tr", { "data-rule": r.rule },
    h("td", { class: "mono" }, r.rule), h("td", {}, r.reason), h("td", {}, r.by),
    h("td", {}, when(r.at_ms)), h("td", {}, h("button", { type: "button",
      onclick: () => pauseAction(r.kind, r.name, true) }, "Resume"))))))
    : h("p", { class: "muted" }, "No pause rule is in force."));
}

async function queuesPage(main) {
  const [queues, rules] = await Promise.all([api("GET", "/queues"), api("GET", "/admin/pauses")]);
  const paused = new Set(rules.map((r) => r.rule));
  const ids = (holders, what) => h("div", {}, holders.map((x) => h("div", {},
    executionLink(x.execution_id), h("span", { class: "muted" },
      ` ${what} ${when(x.since_ms)}${x.priority ? `, priority ${x.priority}` : ""}`))));
  const names = [...new Set(queues.map((q) => q.queue))];
  main.replaceChildren(h("h1", {}, "Queues"),
    h("p", { class: "muted" }, "Slots held and executions waiting, per queue key. Caps and rates live in the workers' code (queue(...))."),
    queues.length ? h("table", {}, h("thead", {}, h("tr", {}, ["queue", "key", "running", "waiting", ""]
      .map((c) => h("th", {}, c)))), h("tbody", {}, queues.map((q) => h("tr", { "data-queue": q.queue },
      h("td", { class: "mono" }, q.queue), h("td", { class: "mono" }, q.key || "—"),
      h("td", {}, h("strong", {}, q.running.length), ids(q.running, "since")),
      h("td", {}, h("strong", {}, q.waiting.length), ids(q.waiting, "arrived")),
      h("td", {}, names.includes(q.queue) ? h("button", { type: "button",
        onclick: () => pauseAction("queue", q.queue, paused.has(`queue:${q.queue}`)) },
      paused.has(`queue:${q.queue}`) ? "Resume queue" : "Pause queue") : "")))))
      : h("p", { class: "muted" }, "No queue has running or waiting executions."));
  return () => queuesPage(main);
}

const auditState = { pages: [] };

async function auditPage(main) {
  const before = auditState.pages[auditState.pages.length - 1];
  const entries = await api("GET", `/audit?limit=50${before ? `&before=${before}` : ""}`);
  main.replaceChildren(h("h1", {}, "Operator audit stream"),
    h("p", { class: "muted" }, "Pauses, resumes, schedule changes, repairs and quarantines, newest first."),
    entries.length ? h("table", {}, h("thead", {}, h("tr", {}, ["time (UTC)", "what", "by", "details"]
      .map((c) => h("th", {}, c)))), h("tbody", {}, entries.map((e) => {
      const { by, ...rest } = e.detail;
      return h("tr", { "data-entry": e.id }, h("td", {}, when(e.at_ms)), h("td", { class: "mono" }, e.what),
        h("td", {}, by || ""), h("td", { class: "mono" }, Object.entries(rest)
          .map(([k, v]) => `${k}=${v}`).join("  ")));
    }))) : h("p", { class: "muted" }, "No entries."),
    h("div", { class: "pager" },
      auditState.pages.length ? h("button", { type: "button", onclick: () => { auditState.pages.pop(); auditPage(main); } }, "Newer") : null,
      entries.length === 50 ? h("button", { type: "button", onclick: () => {
        auditState.pages.push(entries[entries.length - 1].id); auditPage(main);
      } }, "Older") : null));
}

// -- routing ------------------------------------------------------------------------------

let refresh = null;
let timer = null;
let rendering = 0;

/** Read the page's data again: `changed` after an action (an ended execution that was
 * repaired runs again, so its page must look even though it stopped polling). */
function refreshNow(changed = false) {
  if (refresh) Promise.resolve(refresh(changed)).catch(showError);
}

function showError(err) {
  toast(err instanceof ApiError ? `${err.status} ${err.code || ""}: ${err.message}` : String(err), true);
}

async function route() {
  const main = document.getElementById("main");
  const [, page = "executions", ...rest] = location.hash.replace(/^#/, "").split("/");
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  clearInterval(timer);
  refresh = null;
  const mine = ++rendering;
  try {
    let again;
    if (page === "executions" && rest.length) again = await executionPage(main, decodeURIComponent(rest.join("/")));
    else if (page === "schedules") again = await schedulesPage(main);
    else if (page === "pauses") again = await pausesPage(main);
    else if (page === "queues") again = await queuesPage(main);
    else if (page === "audit") again = await auditPage(main);
    else again = await executionsPage(main);
    if (mine !== rendering) return;
    refresh = again || (() => route());
    if (again) timer = setInterval(() => refreshNow(), REFRESH_MS);
  } catch (err) {
    if (mine !== rendering) return;
    main.replaceChildren(h("h1", {}, "Could not load this page"),
      h("p", { class: "error", id: "page-error" }, err.message));
  }
}

document.getElementById("logout").onclick = () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showWho();
  route();
};
window.addEventListener("hashchange", route);
showWho();
route();
