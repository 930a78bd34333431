// virtsnap serve: the page's logic. Plain DOM, no build step; every server string is set as text, never HTML.
"use strict";

const $ = (selector) => document.querySelector(selector);
const POLL_MS = 1000;
const COLLAPSE_ABOVE = 150;  // bigger trees open with only the branch that holds "now" expanded
const RISKY = 77;            // VIR_ERR_SNAPSHOT_REVERT_RISKY: libvirt wants FORCE

const state = {
  session: null, domain: null, data: null, nodes: new Map(), rows: [], selected: null,
  collapsed: new Set(), collapsedFor: null, query: "", busy: false, firstPaint: true,
  sizes: {}, sizesFor: null, plan: null,
  generation: 0,  // bumped by every action: a poll that began before one must not redraw after it
};

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

async function api(path, params = {}) {
  const response = await fetch(`/api/${path}?${new URLSearchParams(params)}`, { credentials: "same-origin" });
  const body = await response.json();
  if (!response.ok) throw Object.assign(new Error(body.error), { code: body.code });
  return body;
}

function setStatus(kind, text) {
  const status = $("#status");
  status.dataset.state = kind;
  status.textContent = text;
}

// Run one action as a server job: busy state with progress while it runs, then its result or error line.
async function act(fields) {
  state.busy = true;
  state.generation++;
  document.body.classList.add("busy");
  const label = `${fields.action} ${fields.snapshot || fields.name || ""}`.trim();
  setStatus("busy", `${label}…`);
  try {
    const response = await fetch("/api/action", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": state.session.csrf },
      body: JSON.stringify(fields),
    });
    let job = await response.json();
    if (!response.ok) { setStatus("error", `error: ${job.error}`); return job; }
    while (job.state === "running") {
      await new Promise((resolve) => setTimeout(resolve, 200));
      job = await api("job", { id: job.id });
      const p = job.progress;
      const done = p && p.total ? ` ${p.what} ${Math.floor((100 * p.done) / p.total)}%` : p ? ` ${p.what}` : "";
      if (job.state === "running") setStatus("busy", `${label}…${done}`);
    }
    setStatus(job.state === "done" ? "ok" : "error", job.state === "done" ? job.message : `error: ${job.message}`);
    return job;
  } catch (err) {
    setStatus("error", `error: ${err.message}`);
    return { state: "failed", message: err.message };
  } finally {
    // Busy until the result is redrawn, so the periodic poll cannot start a second redraw of the same change.
    state.generation++;
    await refresh(true);
    state.busy = false;
    document.body.classList.remove("busy");
    // How many actions have finished and been redrawn: lets a test (or a script) wait for exactly this one.
    document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
  }
}

// ---- domains -------------------------------------------------------------------------------------------

async function loadDomains() {
  const domains = await api("domains");
  const body = $("#domains tbody");
  body.replaceChildren(...domains.map((d) => el("tr", { class: d.name === state.domain ? "selected" : "" },
    el("td", {}, el("button", { type: "button", "data-domain": d.name, text: d.name, onclick: () => chooseDomain(d.name) })),
    el("td", { text: d.state }), el("td", { class: "count", text: String(d.snapshots) }))));
  // No domain chosen yet, or the shown one was undefined elsewhere: the one the address names, else the first.
  if (domains.length && !domains.some((d) => d.name === state.domain)) {
    let wanted = null;
    try { wanted = decodeURIComponent(location.hash.slice(1)); } catch (err) { /* a malformed address */ }
    await chooseDomain(domains.some((d) => d.name === wanted) ? wanted : domains[0].name);
  }
}

async function chooseDomain(name) {
  state.domain = name;
  state.selected = null;
  history.replaceState(null, "", `#${encodeURIComponent(name)}`);
  for (const row of document.querySelectorAll("#domains tr")) {
    row.classList.toggle("selected", row.querySelector("button")?.dataset.domain === name);
  }
  showDetails(null);
  await loadTree();
}

// ---- the tree ------------------------------------------------------------------------------------------

async function loadTree(generation = state.generation) {
  if (!state.domain) return;
  const data = await api("tree", { domain: state.domain });
  if (data.domain !== state.domain || generation !== state.generation) return;  // superseded meanwhile
  state.data = data;
  const nodes = new Map();
  for (const s of data.snapshots) nodes.set(s.name, { ...s, children: [] });
  const roots = [];
  for (const node of nodes.values()) (node.parent && nodes.has(node.parent) ? nodes.get(node.parent).children : roots).push(node);
  // "Now" is where the domain is: a child of the current snapshot (a root when there is none).
  const now = { name: null, now: true, state: data.state, children: [] };
  (data.current ? nodes.get(data.current).children : roots).push(now);
  state.nodes = nodes;
  state.roots = roots;
  if (state.collapsedFor !== data.domain) {
    state.collapsedFor = data.domain;
    state.collapsed = new Set();
    if (nodes.size > COLLAPSE_ABOVE) collapseAll(true);
  }
  $("#tree-title").textContent = `${data.domain} — ${data.snapshots.length} snapshots, ${data.state}`;
  if (state.sizesFor !== data.domain) { state.sizes = {}; state.sizesFor = data.domain; }
  state.plan = null;
  render();
  loadSizes(data);
  if (state.selected && !nodes.has(state.selected)) { state.selected = null; showDetails(null); }
  else if (state.selected) showDetails(state.selected);
  if (state.firstPaint) {
    state.firstPaint = false;
    performance.mark("tree-rendered");
    requestAnimationFrame(() => setTimeout(() => {
      performance.mark("tree-painted");
      document.body.dataset.treePainted = "1";
    }, 0));
  }
}

// Sizes come after the tree is drawn: a driver may read image metadata for them.
async function loadSizes(data) {
  let sizes;
  try { sizes = await api("sizes", { domain: data.domain }); } catch (err) { return; }
  if (state.data !== data) return;
  state.sizes = sizes;
  for (const li of state.rows) {
    if (li.dataset.name) li.querySelector(".size").textContent = formatSize(sizes[li.dataset.name]);
  }
  if (state.selected) { const dd = $("#size-value"); if (dd) dd.textContent = formatSize(sizes[state.selected]); }
}

// A history reads as a main line with side branches: a snapshot's last child (the newest; "now" when it is
// there) continues its line at the same depth, the others branch off one level deeper. A collapsed branch
// point hides its side branches, never the line it is on. visit() returns false (skip the children),
// "main" (only the line) or true.
function walk(visit) {
  const stack = state.roots.map((n) => [n, 0]).reverse();
  while (stack.length) {
    const [node, depth] = stack.pop();
    const descend = visit(node, depth);
    if (descend === false) continue;
    const kids = node.children;
    for (let i = kids.length - 1; i >= 0; i--) {
      const main = i === kids.length - 1;
      if (main || descend !== "main") stack.push([kids[i], depth + (main ? 0 : 1)]);
    }
  }
}

function collapseAll(keepNowOpen) {
  const open = new Set();
  if (keepNowOpen && state.data.current) {
    for (let n = state.nodes.get(state.data.current); n; n = state.nodes.get(n.parent)) open.add(n.name);
  }
  state.collapsed = new Set();
  for (const node of state.nodes.values()) if (node.children.length > 1 && !open.has(node.name)) state.collapsed.add(node.name);
}

function matches(node) {
  return state.query !== "" && node.name !== null && node.name.toLowerCase().includes(state.query);
}

// With a search: the hits, shown with the branch points and roots above them for context (a long chain of
// ancestors in between stays hidden); `path` is everything on the way, so the walk knows where to go down.
function visibleNames() {
  if (state.query === "") return null;
  const path = new Set(), show = new Set();
  let hits = 0;
  for (const node of state.nodes.values()) {
    if (!matches(node)) continue;
    hits++;
    show.add(node.name);
    for (let n = state.nodes.get(node.parent); n && !path.has(n.name); n = state.nodes.get(n.parent)) {
      path.add(n.name);
      if (n.children.length > 1 || !n.parent) show.add(n.name);
    }
    path.add(node.name);
  }
  $("#matches").textContent = `${hits} match${hits === 1 ? "" : "es"}`;
  return { path, show };
}

function formatTime(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const d = new Date(seconds * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function formatSize(size) {
  if (!size) return "—";
  const total = (size.memory || 0) + (size.disk || 0);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = total, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  const exact = size.memory_exact !== false && size.disk_exact !== false;
  return `${exact ? "" : "≈"}${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function stateText(node) {
  if (!node.state) return "";
  return node.memory ? `${node.state} + memory` : node.state === "disk-snapshot" ? "disk only" : `${node.state}, disk`;
}

function render() {
  const keep = visibleNames();
  if (keep === null) $("#matches").textContent = "";
  const rows = [];
  const fragment = document.createDocumentFragment();
  const focused = document.activeElement?.closest?.("#tree li")?.dataset.name ?? null;
  walk((node, depth) => {
    if (node.now) {
      if (keep !== null) return false;
      const li = el("li", { role: "treeitem", "aria-level": depth + 1, tabindex: -1, class: "now", "data-now": "1" },
        row(depth, null, el("span", { class: "label", text: "NOW" }), el("span", { class: "badge", text: "you are here" })));
      li.children[0].children[2].textContent = node.state;
      fragment.append(li);
      rows.push(li);
      return false;
    }
    if (keep !== null && !keep.path.has(node.name)) return false;
    if (keep !== null && !keep.show.has(node.name)) return true;
    const branch = node.children.length > 1;
    const collapsed = keep === null && state.collapsed.has(node.name);
    const current = node.name === state.data.current;
    const hidden = collapsed ? countBelow(node) : 0;
    const toggle = branch ? el("span", { class: "toggle", "aria-hidden": "true", text: collapsed ? "▸" : "▾",
      onclick: (event) => { event.stopPropagation(); toggleNode(node.name); } }) : el("span", { class: "toggle" });
    const li = el("li", {
      role: "treeitem", "aria-level": depth + 1, tabindex: -1, "data-name": node.name,
      "aria-expanded": branch ? String(!collapsed) : null, "aria-selected": String(node.name === state.selected),
      class: [current ? "current" : "", matches(node) ? "hit" : ""].join(" ").trim(),
    }, row(depth, toggle, el("span", { class: "label", text: node.name }),
      current ? el("span", { class: "badge", text: "current" }) : null,
      hidden ? el("span", { class: "muted", text: `(+${hidden})` }) : null));
    const cells = li.children[0].children;
    cells[1].textContent = formatTime(node.time);
    cells[2].textContent = stateText(node);
    cells[3].textContent = node.location;
    cells[4].textContent = formatSize(state.sizes[node.name]);
    cells[5].textContent = node.description;
    cells[5].title = node.description;
    if (node.protected) cells[0].append(el("span", { class: "badge protected", text: "protected" }));
    const verdict = state.plan && state.plan.get(node.name);
    if (verdict) {
      li.classList.add(verdict.action === "remove" ? "prune-remove" : "prune-keep");
      li.title = verdict.action === "remove" ? "prune would remove this" : `prune keeps this: ${verdict.reason}`;
    }
    fragment.append(li);
    rows.push(li);
    return collapsed ? "main" : true;
  });
  $("#tree").replaceChildren(fragment);
  state.rows = rows;
  const target = rows.find((r) => r.dataset.name === (focused ?? state.selected)) || rows.find((r) => r.dataset.name === state.selected) || rows[0];
  if (target) target.tabIndex = 0;
  if (focused && target) target.focus({ preventScroll: true });
}

function row(depth, toggle, ...label) {
  const name = el("span", { class: "name" });
  for (let i = 0; i < depth; i++) name.append(el("span", { class: "indent" }));
  name.append(toggle || el("span", { class: "toggle" }), ...label.filter(Boolean));
  return el("div", { class: "row" }, name, el("span", { class: "time" }), el("span", { class: "state" }),
    el("span", { class: "loc" }), el("span", { class: "size" }), el("span", { class: "desc" }));
}

function countBelow(node) {  // snapshots on the side branches a collapsed node hides
  let count = 0;
  const stack = node.children.slice(0, -1);
  while (stack.length) { const n = stack.pop(); if (!n.now) count++; stack.push(...n.children); }
  return count;
}

function toggleNode(name, open) {
  const shut = open === undefined ? !state.collapsed.has(name) : !open;
  if (shut) state.collapsed.add(name); else state.collapsed.delete(name);
  render();
  const li = state.rows.find((r) => r.dataset.name === name);
  if (li) focusRow(li);
}

function focusRow(li) {
  for (const r of state.rows) r.tabIndex = -1;
  li.tabIndex = 0;
  li.focus();
  li.scrollIntoView({ block: "nearest" });
  if (li.dataset.name) select(li.dataset.name);
}

function select(name) {
  if (state.selected === name) return;
  state.selected = name;
  for (const r of state.rows) r.setAttribute("aria-selected", String(r.dataset.name === name));
  showDetails(name);
}

function onTreeKey(event) {
  const li = event.target.closest("li");
  if (!li) return;
  const i = state.rows.indexOf(li);
  const name = li.dataset.name;
  const node = name ? state.nodes.get(name) : null;
  const go = (j) => { if (state.rows[j]) focusRow(state.rows[j]); };
  switch (event.key) {
    case "ArrowDown": go(i + 1); break;
    case "ArrowUp": go(i - 1); break;
    case "Home": go(0); break;
    case "End": go(state.rows.length - 1); break;
    case "ArrowRight":
      if (node && node.children.length > 1 && state.collapsed.has(name)) toggleNode(name, true); else go(i + 1);
      break;
    case "ArrowLeft":
      if (node && node.children.length > 1 && !state.collapsed.has(name) && state.query === "") toggleNode(name, false);
      else if (node && node.parent) { const p = state.rows.find((r) => r.dataset.name === node.parent); if (p) focusRow(p); }
      break;
    case "Enter": if (name) { select(name); $("#details button")?.focus(); } break;
    case "r": if (name && !state.session.readonly) revertDialog(name); break;
    case "e": if (name && !state.session.readonly) describeDialog(name); break;
    case "Delete": if (name && !state.session.readonly) deleteDialog(name); break;
    case "n": if (!state.session.readonly) createDialog(); break;
    case "p": if (name && !state.session.readonly) act({ action: "protect", domain: state.domain, snapshot: name, protected: !node.protected }); break;
    default: return;
  }
  event.preventDefault();
}

// ---- details -------------------------------------------------------------------------------------------

async function showDetails(name) {
  const pane = $("#details");
  if (!name) {
    const children = [el("p", { class: "hint", text: "Select a snapshot to see its details and XML." })];
    if (state.domain && !state.session.readonly) {
      children.unshift(el("div", { class: "actions" }, el("button", { id: "new-snapshot", type: "button", class: "action",
        text: "New snapshot…", onclick: () => createDialog() })));
    }
    pane.replaceChildren(...children);
    return;
  }
  const node = state.nodes.get(name);
  const facts = [["Name", name], ["Parent", node.parent || "—"], ["Created", formatTime(node.time)],
    ["State", stateText(node)], ["Location", node.location], ["Size", formatSize(state.sizes[name])],
    ["Protected", node.protected ? "yes" : "no"],
    ["Current", name === state.data.current ? "yes" : "no"], ["Description", node.description || "—"]];
  const dl = el("dl");
  for (const [key, value] of facts) {
    dl.append(el("dt", { text: key }), el("dd", { text: value, id: key === "Size" ? "size-value" : null }));
  }
  const pre = el("pre", { id: "xml", text: "loading XML…" });
  const children = [el("h2", { text: name }), dl];
  if (!state.session.readonly) {
    children.push(el("div", { class: "actions" },
      el("button", { id: "act-revert", type: "button", class: "action", text: "Revert…", onclick: () => revertDialog(name) }),
      el("button", { id: "act-edit", type: "button", class: "action", text: "Edit description…", onclick: () => describeDialog(name) }),
      el("button", { id: "act-protect", type: "button", class: "action", text: node.protected ? "Unprotect" : "Protect",
        onclick: () => act({ action: "protect", domain: state.domain, snapshot: name, protected: !node.protected }) }),
      el("button", { id: "act-delete", type: "button", class: "action danger", text: "Delete…", onclick: () => deleteDialog(name) }),
      el("button", { id: "new-snapshot", type: "button", class: "action", text: "New snapshot…", onclick: () => createDialog() })));
  }
  children.push(el("h2", { text: "XML" }), pre);
  pane.replaceChildren(...children);
  try {
    const { xml } = await api("xml", { domain: state.domain, snapshot: name });
    if (state.selected === name) pre.textContent = xml;
  } catch (err) {
    pre.textContent = `error: ${err.message}`;
  }
}

// ---- dialogs -------------------------------------------------------------------------------------------

// Show the dialog; resolves with the form's values when confirmed, null when cancelled.
function ask(title, okText, body, { danger = false } = {}) {
  const dialog = $("#dialog");
  $("#dialog-title").textContent = title;
  $("#dialog-body").replaceChildren(...body);
  const ok = $("#dialog-ok");
  ok.textContent = okText;
  ok.className = danger ? "danger" : "";
  return new Promise((resolve) => {
    const form = $("#dialog-form");
    const done = (value) => {
      form.onsubmit = null; $("#dialog-cancel").onclick = null; dialog.oncancel = null;
      dialog.close();
      resolve(value);
    };
    form.onsubmit = (event) => { event.preventDefault(); done(Object.fromEntries(new FormData(form))); };
    $("#dialog-cancel").onclick = () => done(null);
    dialog.oncancel = (event) => { event.preventDefault(); done(null); };
    dialog.showModal();
    (dialog.querySelector("input[type=text], textarea, input, select") || ok).focus();
  });
}

const field = (label, input) => el("label", {}, label, input);
const radio = (name, value, text, checked, disabled) => el("label", {},
  el("input", { type: "radio", name, value, checked, disabled, id: `f-${name}-${value}` }), ` ${text}`);

async function createDialog() {
  if (!state.domain || state.busy) return;
  const values = await ask(`New snapshot of ${state.domain}`, "Create", [
    field("Name (empty: the time)", el("input", { type: "text", name: "name", id: "f-name", autocomplete: "off" })),
    field("Description", el("textarea", { name: "description", id: "f-description", rows: 3 })),
    radio("kind", "default", "Memory and disks (disks only when the domain is off)", true),
    radio("kind", "disk-only", "Disks only (external)", false),
    el("label", {}, el("input", { type: "checkbox", name: "quiesce", id: "f-quiesce" }), " Quiesce file systems (guest agent)"),
    el("label", {}, el("input", { type: "checkbox", name: "live", id: "f-live" }), " Live (the guest keeps running)"),
  ]);
  if (!values) return;
  await act({ action: "create", domain: state.domain, name: values.name, description: values.description,
    kind: values.kind, quiesce: values.quiesce === "on", live: values.live === "on" });
}

async function revertDialog(name, forceMessage) {
  if (state.busy) return;
  let preview;
  try { preview = await api("preview", { what: "revert", domain: state.domain, snapshot: name }); }
  catch (err) { setStatus("error", `error: ${err.message}`); return; }
  const body = [el("p", { class: "warn", text: preview.lost }), el("p", { text: preview.after }),
    radio("start", "as-snapshot", "Leave it as the snapshot was", true),
    radio("start", "running", "Start it running", false), radio("start", "paused", "Start it paused", false)];
  if (forceMessage) body.unshift(el("p", { class: "warn", id: "force-reason", text: forceMessage }));
  const values = await ask(`Revert ${state.domain} to ${name}?`, forceMessage ? "Revert with FORCE" : "Revert", body,
    { danger: true });
  if (!values) return;
  const job = await act({ action: "revert", domain: state.domain, snapshot: name, start: values.start, force: Boolean(forceMessage) });
  if (job.state === "failed" && job.code === RISKY && !forceMessage) await revertDialog(name, job.message);
}

async function deleteDialog(name) {
  if (state.busy) return;
  let preview;
  try { preview = await api("preview", { what: "delete", domain: state.domain, snapshot: name }); }
  catch (err) { setStatus("error", `error: ${err.message}`); return; }
  const none = preview.descendants === 0;
  const values = await ask(`Delete from ${state.domain}`, "Delete", [
    radio("mode", "this", preview.this, true),
    radio("mode", "children", preview.children, false, none),
    radio("mode", "children-only", preview["children-only"], false, none),
    preview.protected.length ? el("label", { class: "warn" }, el("input", { type: "checkbox", name: "force", id: "f-force" }),
      ` Also delete protected snapshots (FORCE): ${preview.protected.join(", ")}`) : null,
  ].filter(Boolean), { danger: true });
  if (!values) return;
  await act({ action: "delete", domain: state.domain, snapshot: name, mode: values.mode, force: values.force === "on" });
}

async function describeDialog(name) {
  if (state.busy) return;
  const node = state.nodes.get(name);
  const values = await ask(`Description of ${name}`, "Save", [
    field("Description", el("textarea", { name: "description", id: "f-description", rows: 4 })),
  ]);
  if (!values) return;
  await act({ action: "describe", domain: state.domain, snapshot: name, description: values.description });
  void node;
}

const KEEPS = [["keep_last", "Keep last"], ["keep_hourly", "Keep hourly"], ["keep_daily", "Keep daily"],
  ["keep_weekly", "Keep weekly"], ["keep_monthly", "Keep monthly"], ["keep_yearly", "Keep yearly"]];

// Prune in two steps: a dry run marks every row keep or remove (with the rule that kept it), then the removal
// of exactly the previewed snapshots (the server refuses if the plan has changed meanwhile).
async function pruneDialog() {
  if (!state.domain || state.busy) return;
  const body = KEEPS.map(([key, label]) => field(label, el("input", { type: "number", min: 0, name: key, id: `f-${key}` })));
  body.push(field("Only names matching (glob)", el("input", { type: "text", name: "match", id: "f-match" })));
  body.unshift(el("p", { text: "Protected snapshots, the current one and its ancestors are always kept." }));
  const values = await ask(`Prune ${state.domain}: preview`, "Preview", body);
  if (!values) return;
  const policy = { domain: state.domain, match: values.match };
  for (const [key] of KEEPS) if (values[key] !== "") policy[key] = Number(values[key]);
  const job = await act({ action: "prune", dry_run: true, ...policy });
  if (job.state !== "done") return;
  state.plan = new Map(job.result.map((d) => [d.name, d]));
  render();
  const doomed = job.result.filter((d) => d.action === "remove").map((d) => d.name);
  if (!doomed.length) return;
  const confirmed = await ask(`Prune ${state.domain}`, `Remove ${doomed.length} snapshot${doomed.length === 1 ? "" : "s"}`, [
    el("p", { class: "warn", text: `These ${doomed.length} snapshots will be deleted (children move to their parents):` }),
    el("ul", { id: "prune-list" }, ...doomed.map((n) => el("li", { text: n }))),
  ], { danger: true });
  if (!confirmed) { state.plan = null; render(); return; }
  await act({ action: "prune", ...policy, expect: doomed });
}

// ---- live updates --------------------------------------------------------------------------------------

async function refresh(force) {
  const generation = state.generation;
  try {
    const { fingerprint } = await api("fingerprint", state.domain ? { domain: state.domain } : {});
    if (!force && (generation !== state.generation || (state.data && fingerprint === state.data.fingerprint))) return;
    await loadDomains();
    await loadTree(generation);
  } catch (err) {
    setStatus("error", `error: ${err.message}`);
  }
}

async function start() {
  state.session = await api("session");
  $("#uri").textContent = state.session.uri;
  if (state.session.readonly) { $("#mode").textContent = "read-only"; document.body.classList.add("readonly"); }
  $("#tree").addEventListener("keydown", onTreeKey);
  $("#tree").addEventListener("click", (event) => { const li = event.target.closest("li"); if (li) focusRow(li); });
  $("#search").addEventListener("input", (event) => { state.query = event.target.value.trim().toLowerCase(); render(); });
  $("#search").addEventListener("keydown", (event) => {
    if (event.key === "Escape") { event.target.value = ""; state.query = ""; render(); }
    if (event.key === "ArrowDown" || event.key === "Enter") { event.preventDefault(); if (state.rows[0]) focusRow(state.rows.find((r) => r.classList.contains("hit")) || state.rows[0]); }
  });
  $("#expand-all").addEventListener("click", () => { state.collapsed.clear(); render(); });
  $("#collapse-all").addEventListener("click", () => { collapseAll(false); render(); });
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && !event.target.closest("input, textarea, dialog")) { event.preventDefault(); $("#search").focus(); }
  });
  if (!state.session.readonly) {
    $("#collapse-all").after(el("button", { id: "prune", type: "button", class: "action danger", text: "Prune…", onclick: () => pruneDialog() }));
  }
  showDetails(null);
  await loadDomains();
  setInterval(() => { if (!state.busy && !$("#dialog").open) refresh(false); }, POLL_MS);
}

start().catch((err) => setStatus("error", `error: ${err.message}`));
