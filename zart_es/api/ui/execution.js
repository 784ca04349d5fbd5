// One execution: what it got and gave, its timeline drawn to scale, pending timers, the
// event log with its hash-chain check, and the operator's actions (each one API call,
// asked for with a confirmation).

import {
  api, badge, confirmAction, duration, executionLink, h, json, operator, pauseAction, when,
} from "./console.js";

const SVG = "http://www.w3.org/2000/svg";

const COLOURS = {
  completed: "var(--green)", retry: "var(--yellow)", failed: "var(--red)",
  backoff: "var(--yellow)", sleep: "var(--blue)", wait: "var(--magenta)", child: "var(--cyan)",
  run: "var(--grey)", queued: "var(--yellow)", paused: "var(--grey)",
};
const FAINT = new Set(["backoff", "sleep", "wait", "run", "queued"]);

// the last query asked on this page (kept across the page's refreshes): asked again on demand
const asked = { id: null, name: "", args: "[]", answer: undefined, error: null, at: 0 };

/** ``text`` as JSON, or an error saying ``what`` is not JSON. */
function parsed(text, what) {
  try { return JSON.parse(text); } catch (err) { throw new Error(`${what} is not JSON: ${err.message}`); }
}

async function ask(path) {
  const args = parsed(asked.args || "[]", "the arguments");
  if (!Array.isArray(args)) throw new Error("the arguments must be a JSON list");
  try {
    const reply = await api("POST", `${path}/queries/${encodeURIComponent(asked.name)}`, { args });
    Object.assign(asked, { answer: reply.result, error: null, at: Date.now() });
  } catch (err) {
    Object.assign(asked, { answer: undefined, error: err.message, at: Date.now() });
  }
}

function queryCard(id, path, refresh) {
  if (asked.id !== id) Object.assign(asked, { id, name: "", args: "[]", answer: undefined, error: null, at: 0 });
  const body = !asked.name ? h("p", { class: "muted" }, "Ask a query the workflow registered (ctx.on_query): read-only, nothing is recorded.")
    : [h("p", {}, h("span", { class: "mono" }, `${asked.name}(${asked.args === "[]" ? "" : asked.args})`),
      h("span", { class: "muted" }, ` at ${when(asked.at)} UTC `),
      h("button", { type: "button", id: "query-refresh", onclick: async () => { await ask(path); refresh(); } }, "Refresh")),
    asked.error ? h("pre", { class: "mono error", id: "query-error" }, asked.error)
      : h("pre", { class: "mono", id: "query-result" }, JSON.stringify(asked.answer, null, 2))];
  return h("div", { class: "card", id: "queries" }, h("h2", {}, "Query"), body);
}

export async function executionPage(main, id) {
  const path = `/executions/${encodeURIComponent(id)}`;
  let ended = false;
  let log = { version: -1, history: [], chain: null }; // read again only when it grew

  async function load() {
    const [detail, timeline, rules] = await Promise.all([
      api("GET", path), api("GET", `${path}/timeline`), api("GET", "/admin/pauses"),
    ]);
    if (detail.version !== log.version) {
      const [history, chain] = await Promise.all([wholeLog(path), api("GET", `${path}/verify`)]);
      log = { version: detail.version, history, chain };
    }
    ended = detail.done;
    render(main, { detail, history: log.history, timeline, chain: log.chain, rules,
      refresh: () => load().catch(() => {}) });
  }
  await load();
  return async (changed) => { if (changed || !ended) await load(); }; // polls until it ends
}

/** Every event of the log, following the history route's pages (a list: an older API). */
async function wholeLog(path) {
  const events = [];
  let cursor = null;
  do {
    const reply = await api("GET", `${path}/history?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    if (Array.isArray(reply)) return reply;
    events.push(...reply.items);
    cursor = reply.next;
  } while (cursor);
  return events;
}

function render(main, { detail, history, timeline, chain, rules, refresh }) {
  const started = history[0] || {};
  const children = timeline.rows.filter((r) => r.kind === "child")
    .flatMap((r) => r.spans.map((s) => [s.detail, s.outcome || "running"]));
  const overview = h("dl", {},
    h("dt", {}, "workflow"), h("dd", {}, detail.workflow),
    h("dt", {}, "created"), h("dd", {}, `${when(detail.created_ms)} UTC`),
    h("dt", {}, "updated"), h("dd", {}, `${when(detail.updated_ms)} UTC`),
    h("dt", {}, "events"), h("dd", {}, detail.version),
    h("dt", {}, "task queue"), h("dd", {}, detail.task_queue || "default"),
    detail.current_step ? [h("dt", {}, "current call"), h("dd", { class: "mono" }, detail.current_step)] : null,
    detail.cancel_requested ? [h("dt", {}, "cancel"), h("dd", {}, "requested")] : null,
    (detail.stale_steps || []).length ? [h("dt", {}, "potentially stale"), h("dd", { id: "stale", class: "mono",
      title: "kept by a re-run (preserve) although recorded after its re-run point" }, detail.stale_steps.join(", "))] : null,
    started.parent_id ? [h("dt", {}, "parent"), h("dd", { id: "parent" }, executionLink(started.parent_id))] : null,
    children.length ? [h("dt", {}, "children"), h("dd", { id: "children" }, children.map(([child, outcome]) =>
      h("div", {}, executionLink(child), " ", badge(outcome))))] : null);
  const outcome = detail.error
    ? h("div", { class: "card", id: "error" }, h("h2", {}, "Error"), h("pre", { class: "mono error" }, detail.error))
    : h("div", { class: "card", id: "result" }, h("h2", {}, "Result"),
      detail.status === "completed" ? json(detail.result) : h("p", { class: "muted" }, "Not ended yet."));
  main.replaceChildren(
    h("p", {}, h("a", { href: "#/executions" }, "← Executions")),
    h("h1", {}, h("span", { class: "mono", id: "execution-id" }, detail.execution_id),
      badge(detail.status)),
    actions(detail, timeline, rules, refresh),
    h("div", { class: "grid" },
      h("div", { class: "card" }, h("h2", {}, "Overview"), overview),
      h("div", { class: "card", id: "input" }, h("h2", {}, "Input"), json(started.input)),
      outcome, queryCard(detail.execution_id, `/executions/${encodeURIComponent(detail.execution_id)}`, refresh)),
    h("h2", {}, "Timeline"),
    h("div", { id: "timeline" }, drawTimeline(timeline, main.clientWidth || 1000), legend()),
    h("h2", {}, "Pending timers"),
    detail.timers_pending.length ? h("table", { id: "timers" }, h("thead", {}, h("tr", {},
      h("th", {}, "timer"), h("th", {}, "due (UTC)"))), h("tbody", {}, detail.timers_pending.map((t) =>
      h("tr", {}, h("td", { class: "mono" }, t.name), h("td", {}, when(t.due_ms))))))
      : h("p", { class: "muted" }, "None."),
    h("h2", {}, "Event log ", chainBadge(chain)),
    eventLog(history));
}

// The audit badge: the chain (keyed or not) and, with an archive, the sealed ledger.
function chainBadge(chain) {
  if (!chain.intact) {
    return h("span", { class: "badge bad", id: "chain" }, `hash chain broken at event #${chain.broken_at}: ${chain.reason}`);
  }
  if (chain.findings && chain.findings.length) {
    return h("span", { class: "badge bad", id: "chain", title: chain.findings.join("\n") }, `audit: ${chain.findings[0]}`);
  }
  const sealed = chain.sealed === true ? ", matches the sealed ledger" : chain.sealed === false ? ", not sealed yet" : "";
  if (!chain.keyed) {
    return h("span", { class: "badge warn", id: "chain", title: "set ZART_AUDIT_KEY to detect tampering" },
      `hash chain intact: ${chain.events} events (unkeyed: detects accidents, not tampering)${sealed}`);
  }
  return h("span", { class: "badge ok", id: "chain" }, `hash chain verified: ${chain.events} events intact, keyed${sealed}`);
}

function actions(detail, timeline, rules, refresh) {
  const id = detail.execution_id;
  const path = `/executions/${encodeURIComponent(id)}`;
  const admin = `/admin/executions/${encodeURIComponent(id)}`;
  const by = operator();
  const steps = timeline.rows.filter((r) => r.kind === "step").map((r) => r.name);
  const failedSteps = timeline.rows.filter((r) => r.kind === "step" &&
    r.spans.length && r.spans[r.spans.length - 1].outcome === "failed").map((r) => r.name);
  const calls = timeline.rows.filter((r) => r.kind !== "execution").map((r) => r.name);
  const buttons = [];
  const add = (label, action, danger = false) => buttons.push(h("button", {
    type: "button", class: danger ? "danger" : "", "data-action": action.name || label,
    onclick: action,
  }, label));
  if (!detail.done) {
    add("Cancel", function cancel() {
      confirmAction({
        title: `Cancel ${id}`, ok: "Cancel execution", danger: true,
        text: "The workflow gets Cancelled at its next durable call; its compensation steps run and are recorded.",
        fields: [{ name: "reason", label: "Reason (recorded in the operator trail)" }],
        run: async (v) => {
          await api("POST", `${path}/cancel?by=${encodeURIComponent(operator())}&reason=${encodeURIComponent(v.reason || "")}`);
          return `cancel requested for ${id}`;
        },
      });
    }, true);
    add("Send signal", function signal() {
      confirmAction({
        title: `Send a signal to ${id}`, ok: "Send",
        text: "Kept until a wait for that name takes it.",
        fields: [{ name: "name", label: "Signal name" }, { name: "payload", label: "Payload (JSON)", type: "textarea", value: "null" },
          { name: "signal_id", label: "Signal id (optional: makes delivery idempotent)" }],
        run: async (v) => {
          const payload = parsed(v.payload || "null", "the payload");
          const query = `?by=${encodeURIComponent(operator())}` + (v.signal_id ? `&signal_id=${encodeURIComponent(v.signal_id)}` : "");
          const reply = await api("POST", `${path}/signals/${encodeURIComponent(v.name)}${query}`, payload);
          return reply.delivered ? `signal ${v.name} delivered` : `signal id ${v.signal_id} was already delivered`;
        },
      });
    });
  }
  add("Query", function query() {
    confirmAction({
      title: `Ask ${id} a query`, ok: "Ask",
      text: "A worker replays the log read-only and calls the workflow's handler (ctx.on_query); nothing is recorded.",
      fields: [{ name: "name", label: "Query name", value: asked.name },
        { name: "args", label: "Arguments (a JSON list)", value: asked.args }],
      run: async (v) => {
        Object.assign(asked, { name: v.name.trim(), args: v.args.trim() || "[]" });
        if (!asked.name) throw new Error("name the query");
        await ask(path);
        refresh();
        if (asked.error) throw new Error(asked.error);
        return `query ${asked.name} answered`;
      },
    });
  });
  if (!detail.done) {
    add("Send update", function update() {
      confirmAction({
        title: `Send an update to ${id}`, ok: "Send and wait",
        text: "Recorded in the log, taken by ctx.wait_for_update; the workflow's answer is shown.",
        fields: [{ name: "name", label: "Update name" }, { name: "payload", label: "Payload (JSON)", type: "textarea", value: "null" },
          { name: "update_id", label: "Update id (optional: a retry waits for the same answer)" }],
        run: async (v) => {
          const payload = parsed(v.payload || "null", "the payload");
          const reply = await api("POST", `${path}/updates/${encodeURIComponent(v.name)}?by=${encodeURIComponent(operator())}`,
            { payload, update_id: v.update_id || null });
          return `update ${v.name} answered: ${JSON.stringify(reply.result)}`;
        },
      });
    });
  }
  if (detail.status === "failed") {
    add("Retry step", function retryStep() {
      confirmAction({
        title: `Retry the failed step of ${id}`, ok: "Retry step",
        text: "The failed execution reopens and runs that step again; every other recorded result is kept.",
        fields: [{ name: "step", label: "Step", type: "select", value: "",
          options: [["", `the latest failed step${failedSteps.length ? ` (${failedSteps[failedSteps.length - 1]})` : ""}`],
            ...failedSteps.map((s) => [s, s])] }, { name: "reason", label: "Reason" }],
        run: async (v) => {
          const reply = await api("POST", `${admin}/retry-step`, { step: v.step || null, reason: v.reason, by });
          return `step ${reply.step} runs again`;
        },
      });
    });
  }
  if (detail.done) {
    add("Rerun from a step", function rerun() {
      confirmAction({
        title: `Re-run ${id} from a step`, ok: "Rerun", danger: true,
        text: "Forgets that call and every durable call recorded after it; they run again.",
        fields: [{ name: "step", label: "From", type: "select", options: calls.map((s) => [s, s]), value: steps[0] },
          { name: "reason", label: "Reason" }],
        run: async (v) => {
          const reply = await api("POST", `${admin}/rerun`, { steps: [v.step], reason: v.reason, by });
          return `forgotten: ${reply.forgotten.join(", ")}`;
        },
      });
    });
    add("Restart", function restart() {
      confirmAction({
        title: `Restart ${id}`, ok: "Restart", danger: true,
        text: "Runs again from scratch with the same input; the old run stays in the log.",
        fields: [{ name: "reason", label: "Reason" }],
        run: async (v) => {
          const reply = await api("POST", `${admin}/restart`, { reason: v.reason, by });
          return `restarted: run ${reply.run}`;
        },
      });
    }, true);
  }
  if (detail.status === "quarantined") {
    add("Release", function release() {
      confirmAction({
        title: `Release ${id}`, ok: "Release",
        text: "The quarantined execution runs again from its log.",
        fields: [{ name: "reason", label: "Reason" }],
        run: async (v) => { await api("POST", `${admin}/release`, { reason: v.reason, by }); return `${id} released`; },
      });
    });
  }
  const paused = rules.some((r) => r.rule === `workflow:${detail.workflow}`);
  add(paused ? `Resume workflow ${detail.workflow}` : `Pause workflow ${detail.workflow}`,
    function pauseWorkflow() { pauseAction("workflow", detail.workflow, paused); });
  return h("div", { class: "actions", id: "actions" }, buttons);
}

function eventLog(history) {
  const envelope = new Set(["type", "seq", "at_ms", "prev_hash"]);
  return h("table", { id: "events" }, h("thead", {}, h("tr", {},
    ["#", "time (UTC)", "event", "details"].map((c) => h("th", {}, c)))),
  h("tbody", {}, history.map((e) => {
    const rest = Object.fromEntries(Object.entries(e).filter(([k]) => !envelope.has(k)));
    let text = JSON.stringify(rest);
    if (text.length > 400) text = `${text.slice(0, 400)}…`;
    return h("tr", { "data-seq": e.seq }, h("td", {}, e.seq), h("td", {}, when(e.at_ms)),
      h("td", {}, e.type), h("td", { class: "mono" }, text));
  })));
}

// -- the timeline ---------------------------------------------------------------------------

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const child of children) if (child) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

/** The waterfall: one row per durable call, every span to scale on Redis' clock. */
export function drawTimeline(timeline, width) {
  const labelWidth = 210;
  const rowHeight = 24;
  const top = 26;
  const right = 16;
  const total = Math.max(timeline.end_ms - timeline.start_ms, 1);
  const plot = Math.max(width - labelWidth - right, 200);
  const x = (ms) => labelWidth + ((ms - timeline.start_ms) / total) * plot;
  const height = top + timeline.rows.length * rowHeight + 8;
  const root = svg("svg", { viewBox: `0 0 ${labelWidth + plot + right} ${height}`, role: "img",
    "aria-label": `timeline of ${timeline.execution_id}` });
  for (let i = 0; i <= 5; i++) { // the axis
    const at = x(timeline.start_ms + (total * i) / 5);
    root.append(svg("line", { x1: at, x2: at, y1: top - 6, y2: height - 4, stroke: "#eceff4" }),
      svg("text", { x: at, y: 14, class: "axis", "text-anchor": i === 0 ? "start" : i === 5 ? "end" : "middle" },
        i === 0 ? "0" : `+${duration((total * i) / 5)}`));
  }
  timeline.rows.forEach((row, i) => {
    const y = top + i * rowHeight;
    const g = svg("g", { class: "row", "data-row": row.name, "data-kind": row.kind });
    const name = row.name.length > 30 ? `${row.name.slice(0, 29)}…` : row.name;
    g.append(svg("text", { x: 6, y: y + 16, class: "label" }, name, svg("title", {}, row.name)));
    for (const span of row.spans) {
      const end = span.end_ms === null || span.end_ms === undefined ? timeline.end_ms : span.end_ms;
      const key = span.kind === "attempt" ? (span.outcome || "completed") : span.kind;
      const x0 = x(span.start_ms);
      const rect = svg("rect", {
        x: x0, y: y + 5, width: Math.max(x(end) - x0, 2), height: rowHeight - 10, rx: 2,
        fill: COLOURS[key] || "var(--grey)", "fill-opacity": FAINT.has(key) ? 0.45 : 0.95,
        stroke: span.end_ms === null || span.end_ms === undefined ? "var(--fg)" : "none",
        "stroke-dasharray": "3 2", class: `span ${span.kind} ${span.outcome || "open"}`,
      }, svg("title", {}, spanText(row, span, timeline)));
      if (span.kind === "child" && span.detail) {
        g.append(svg("a", { href: `#/executions/${encodeURIComponent(span.detail)}` }, rect));
      } else {
        g.append(rect);
      }
    }
    root.append(g);
  });
  for (const mark of timeline.marks) {
    const at = x(mark.at_ms);
    root.append(svg("g", { class: "mark" },
      svg("line", { x1: at, x2: at, y1: top - 4, y2: height - 4, stroke: "var(--accent)", "stroke-dasharray": "2 3" }),
      svg("path", { d: `M${at - 4},${top - 8} L${at + 4},${top - 8} L${at},${top - 2} Z`, fill: "var(--accent)" }),
      svg("title", {}, `#${mark.seq} +${duration(mark.at_ms - timeline.start_ms)} ${mark.label}`)));
  }
  return root;
}

function spanText(row, span, timeline) {
  const end = span.end_ms === null || span.end_ms === undefined ? null : span.end_ms;
  const took = span.took_us >= 0 ? duration(span.took_us / 1000)
    : end === null ? `${duration(timeline.end_ms - span.start_ms)} so far` : duration(end - span.start_ms);
  const parts = [`${row.name}: ${span.kind}${span.attempt ? ` #${span.attempt}` : ""}`,
    span.outcome || "still going", took, `from +${duration(span.start_ms - timeline.start_ms)}`];
  if (span.due_ms) parts.push(`due ${when(span.due_ms)}`);
  if (span.detail) parts.push(span.detail);
  if (span.estimated) parts.push("(start not recorded: an older log)");
  return parts.join(" · ");
}

function legend() {
  const item = (colour, label, faint) => h("span", {}, h("i", { style: `background:${colour};opacity:${faint ? 0.45 : 1}` }), label);
  return h("div", { class: "legend" }, item(COLOURS.completed, "attempt completed"),
    item(COLOURS.retry, "attempt failed, retried"), item(COLOURS.failed, "attempt failed"),
    item(COLOURS.backoff, "backoff", true), item(COLOURS.sleep, "sleep", true),
    item(COLOURS.wait, "wait for a signal", true), item(COLOURS.child, "child execution"),
    item(COLOURS.run, "run", true), h("span", {}, "dashed outline: still going; ▼ a signal, cancel or repair"));
}
