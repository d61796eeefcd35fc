// The inspector: the latest pushes from /api/pushes, kept current by /api/events, one call at a time in detail,
// and the latest refused pushes from /api/rejects.
// Every value from a push is put on the page as text (never as HTML): push bodies come from outside.
// When the server answers 401, the page asks for the API token, keeps it for this tab in sessionStorage and
// sends it as "Authorization: Bearer" on every request, the event stream included.
"use strict";

const PAGE = 100;
const REJECTS_PAGE = 50;
const TOKEN_KEY = "airudder-receiver.api-token";
const rows = new Map(); // "workflow/node/call" -> {item, tr}
let newestSeq = 0;
let oldestSeq = null;
let selectedKey = null;
let catchingUp = null;
let catchUpAgain = false;
let retryMs = 2000; // until the stream's own "retry:" says otherwise

const $ = (id) => document.getElementById(id);

function keyOf(item) {
  return [item.workflow_id, item.node_id, item.call_id].join("/");
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

class Unauthorized extends Error {}

async function request(path, accept, method = "GET") {
  const headers = { Accept: accept };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { method, headers, cache: "no-store" });
  if (response.status === 401) {
    const answer = await response.json().catch(() => ({}));
    throw new Unauthorized(answer.detail || "the server wants the API token");
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response;
}

async function getJson(path) {
  return (await request(path, "application/json")).json();
}

async function postJson(path) {
  return (await request(path, "application/json", "POST")).json();
}

// -- the list ---------------------------------------------------------------------------------

function shortTime(iso) {
  // The receive time on this computer's clock, as the server's log lines show it; the date only when not today.
  if (!iso) return "";
  const moment = new Date(iso);
  const clock = moment.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  const sameDay = moment.toDateString() === new Date().toDateString();
  return sameDay ? clock : `${moment.toLocaleDateString([], { month: "short", day: "numeric" })} ${clock}`;
}

function rowCells(item) {
  return [
    el("td", { text: shortTime(item.first_received_at), title: `${item.first_received_at} (UTC)`, class: "time" }),
    el("td", {},
      el("span", { class: "workflow", text: item.workflow_name || item.workflow_id }),
      el("span", { class: "node", text: item.node_name || item.node_id })),
    el("td", { text: item.callee_number || "–", class: "callee" }),
    el("td", { title: item.hangup_type ? `hang-up: ${item.hangup_type}` : "" },
      el("span", { class: "intention", text: item.intention || "–" })),
    el("td", { text: String(item.deliveries), class: item.deliveries > 1 ? "deliveries again" : "deliveries" }),
  ];
}

function searchText(item) {
  return [item.workflow_name, item.workflow_id, item.node_name, item.node_id, item.callee_number, item.case_id,
    item.intention, item.hangup_type, item.ring_type, item.call_id, item.task_id].join(" ").toLowerCase();
}

function flash(tr, kind) {
  tr.classList.remove("arrived-new", "arrived-duplicate");
  void tr.offsetWidth; // restart the animation
  tr.classList.add(`arrived-${kind}`);
}

function putRow(item, where, kind) {
  const key = keyOf(item);
  let entry = rows.get(key);
  if (entry) {
    entry.item = item;
    entry.tr.replaceChildren(...rowCells(item));
  } else {
    const tr = el("tr", { tabindex: "0", "data-key": key, "data-seq": String(item.seq) });
    tr.append(...rowCells(item));
    tr.addEventListener("click", () => select(key));
    tr.addEventListener("keydown", (event) => { if (event.key === "Enter") select(key); });
    const body = $("pushes").tBodies[0];
    if (where === "top") body.prepend(tr); else body.append(tr);
    entry = { item, tr };
    rows.set(key, entry);
  }
  entry.tr.dataset.search = searchText(item);
  entry.tr.classList.toggle("selected", key === selectedKey);
  if (kind) flash(entry.tr, kind);
  newestSeq = Math.max(newestSeq, item.seq);
  oldestSeq = oldestSeq === null ? item.seq : Math.min(oldestSeq, item.seq);
}

function applyFilter() {
  const terms = $("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const { tr } of rows.values()) {
    const match = terms.every((term) => tr.dataset.search.includes(term));
    tr.hidden = !match;
    if (match) shown += 1;
  }
  $("empty").hidden = rows.size > 0;
  $("summary").textContent = terms.length
    ? `${shown} of ${rows.size} calls match`
    : `${rows.size} call${rows.size === 1 ? "" : "s"} shown`;
}

async function loadLatest() {
  const page = await getJson(`/api/pushes?order=newest&limit=${PAGE}`);
  for (const item of page.items) putRow(item, "bottom");
  $("older").hidden = page.items.length < PAGE;
  applyFilter();
}

async function loadOlder() {
  if (oldestSeq === null) return;
  const page = await getJson(`/api/pushes?order=newest&limit=${PAGE}&before=${oldestSeq}`);
  for (const item of page.items) putRow(item, "bottom");
  $("older").hidden = page.items.length < PAGE;
  applyFilter();
}

// Pushes committed since the newest one shown; after a reconnection this is how nothing is missed.
// A call while a catch-up runs makes it go round once more: its page may have been read before that commit.
async function catchUp() {
  if (catchingUp) {
    catchUpAgain = true;
    return catchingUp;
  }
  catchingUp = (async () => {
    try {
      do {
        catchUpAgain = false;
        for (;;) {
          const page = await getJson(`/api/pushes?after=${newestSeq}&limit=1000`);
          for (const item of page.items) putRow(item, "top", "new");
          if (page.items.length < 1000) break;
        }
      } while (catchUpAgain);
      applyFilter();
    } finally {
      catchingUp = null;
    }
  })();
  return catchingUp;
}

async function refresh(key, kind) {
  if (!rows.has(key)) return;
  const push = await getJson(`/api/pushes/${key.split("/").map(encodeURIComponent).join("/")}`);
  putRow(push, "top", kind);
  applyFilter();
  if (key === selectedKey) showDetail(push);
}

// -- refused pushes -----------------------------------------------------------------------------

// The latest refused pushes, newest first; loaded at the start and whenever the list is opened (refusals
// come with no event).
async function loadRejects() {
  const page = await getJson(`/api/rejects?order=newest&limit=${REJECTS_PAGE}`);
  const body = $("rejects").tBodies[0];
  body.replaceChildren(...page.items.map((reject) => {
    const tr = el("tr", { tabindex: "0", "data-id": String(reject.id) },
      el("td", { text: shortTime(reject.received_at), title: `${reject.received_at} (UTC)`, class: "time" }),
      el("td", { text: reject.reason, title: reject.detail }),
      el("td", { text: reject.remote || "–" }),
      el("td", { text: reject.body_bytes === null ? "not kept" : `${reject.body_bytes} bytes` }));
    tr.addEventListener("click", () => showReject(reject));
    tr.addEventListener("keydown", (event) => { if (event.key === "Enter") showReject(reject); });
    return tr;
  }));
  const more = page.items.length === REJECTS_PAGE || page.more ? "+" : "";
  $("reject-count").textContent = `(${page.items.length}${more})`;
  $("no-rejects").hidden = page.items.length > 0;
}

function showReject(reject) {
  selectedKey = null;
  for (const { tr } of rows.values()) tr.classList.remove("selected");
  $("detail-pane").replaceChildren(
    el("div", { class: "detail-title" },
      el("h2", { text: `Refused: ${reject.reason}` }),
      el("span", { class: "description", text: reject.detail })),
    facts([
      ["Received", reject.received_at],
      ["Client", reject.remote],
      ["Path", reject.path],
      ["Taken in later", reject.reprocessed_at ? `${reject.reprocessed_at} as seq ${reject.reprocessed_seq}` : ""],
    ]),
    section("Headers", chips(reject.headers, "No headers kept.")),
    section("Body", reject.body === null
      ? el("p", { class: "none", text: "The body was not kept (too large, incomplete or not decodable)." })
      : el("pre", { class: "reject-body", text: reject.body })),
  );
  $("detail-pane").scrollTop = 0;
}

// -- live updates -------------------------------------------------------------------------------

function setLive(state, text) {
  const pill = $("live");
  pill.className = `pill ${state}`;
  pill.textContent = text;
}

function onPushes(pushes) {
  if (pushes.some((push) => push.outcome === "new")) catchUp().catch(report);
  for (const push of pushes) {
    if (push.outcome !== "new") refresh(keyOf(push), "duplicate").catch(report);
  }
}

// One server-sent event frame (the lines before a blank line): its event name and data lines.
function dispatch(frame) {
  let name = "message";
  const data = [];
  for (const line of frame.split("\n")) {
    if (line.startsWith(":")) continue; // a comment: the server's keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
    else if (field === "retry" && /^\d+$/.test(value)) retryMs = Number(value);
  }
  if (name === "pushes" && data.length) onPushes(JSON.parse(data.join("\n")));
}

// EventSource cannot send an Authorization header, so the stream is read through fetch and split here.
async function readStream() {
  const response = await request("/api/events", "text/event-stream");
  setLive("live", "live");
  catchUp().catch(report); // whatever was committed while the stream was down
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered = (buffered + value).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      dispatch(buffered.slice(0, end));
      buffered = buffered.slice(end + 2);
    }
  }
}

async function listen() {
  for (;;) {
    try {
      await readStream();
    } catch (error) {
      if (error instanceof Unauthorized) throw error;
    }
    setLive("waiting", "reconnecting…");
    await new Promise((resolve) => setTimeout(resolve, retryMs));
  }
}

function report(error) {
  if (error instanceof Unauthorized) askForToken(error.message);
  else setLive("broken", String(error.message || error));
}

// -- the API token --------------------------------------------------------------------------------

function askForToken(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("login-reason").textContent = reason;
  $("workspace").hidden = true;
  $("login").hidden = false;
  setLive("waiting", "token needed");
  $("token").focus();
}

function useToken(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  $("login").hidden = true;
  $("workspace").hidden = false;
  start();
}

// -- the detail ---------------------------------------------------------------------------------

async function select(key) {
  selectedKey = key;
  for (const [k, { tr }] of rows) tr.classList.toggle("selected", k === key);
  const push = await getJson(`/api/pushes/${key.split("/").map(encodeURIComponent).join("/")}`);
  if (selectedKey === key) showDetail(push);
}

function facts(pairs) {
  const dl = el("dl", { class: "facts" });
  for (const [name, value] of pairs) {
    if (value === undefined || value === null || value === "") continue;
    dl.append(el("dt", { text: name }), el("dd", { text: String(value) }));
  }
  return dl;
}

function section(title, ...content) {
  return el("section", { class: "block" }, el("h3", { text: title }), ...content);
}

function chips(object, empty) {
  const entries = Object.entries(object || {});
  if (!entries.length) return el("p", { class: "none", text: empty });
  const list = el("ul", { class: "chips" });
  for (const [name, value] of entries) {
    list.append(el("li", {}, el("span", { class: "chip-name", text: name }), el("span", { text: String(value) })));
  }
  return list;
}

function transcript(turns) {
  const said = [];
  for (const turn of turns || []) {
    if (turn.robottext) said.push(["robot", "Robot", turn.robottext, turn.time]);
    if (turn.text) said.push(["person", "Person", turn.text, turn.time]);
  }
  if (!said.length) return el("p", { class: "none", text: "No transcript in this push." });
  const list = el("ol", { class: "dialogue" });
  for (const [who, label, text, time] of said) {
    list.append(el("li", { class: `turn ${who}` },
      el("span", { class: "speaker", text: `${label}${time ? ` · ${time}` : ""}` }),
      el("p", { class: "bubble", text })));
  }
  return list;
}

function table(items, columns, empty) {
  if (!items || !items.length) return el("p", { class: "none", text: empty });
  const head = el("tr", {}, ...columns.map(([title]) => el("th", { text: title })));
  const body = el("tbody");
  for (const item of items) {
    body.append(el("tr", {}, ...columns.map(([, field]) => el("td", { text: item[field] ?? "" }))));
  }
  return el("table", { class: "small" }, el("thead", {}, head), body);
}

function retryButton(job, after) {
  // Sends the delivery again now, from a fresh attempt count (POST /api/deliveries/{id}/retry).
  const button = el("button", { type: "button", class: "retry", text: job.state === "dead" ? "Retry" : "Retry now" });
  button.addEventListener("click", async (event) => {
    event.stopPropagation();
    button.disabled = true;
    button.textContent = "Queued";
    try {
      await postJson(`/api/deliveries/${job.id}/retry`);
      await after();
    } catch (error) {
      button.textContent = "Failed";
      report(error);
    }
  });
  return button;
}

function forwarding(jobs) {
  // Each delivery of this call to a [[forward]] destination, with every attempt.
  if (!jobs || !jobs.length) return el("p", { class: "none", text: "Not forwarded: no [[forward]] destination takes this call." });
  const list = el("ul", { class: "forwards" });
  for (const job of jobs) {
    const about = [job.destination, job.version ? `version ${job.version}` : "", `${job.attempts} attempt(s)`,
      job.next_attempt_at ? `next at ${shortTime(job.next_attempt_at)}` : ""].filter(Boolean).join(" · ");
    const tries = (job.history || []).map((a) => el("li", {
      text: `${shortTime(a.attempted_at)} · ${a.status ?? "no answer"} · ${Math.round(a.seconds * 1000)} ms${a.error ? ` · ${a.error}` : ""}`,
    }));
    const again = job.state === "delivered" ? null : retryButton(job, () => selectedKey ? select(selectedKey) : null);
    list.append(el("li", { class: "forward" },
      el("span", { class: `state ${job.state}`, text: job.state }),
      el("span", { text: ` ${about}` }),
      again,
      el("ol", { class: "attempts" }, ...tries)));
  }
  return list;
}

function showDetail(push) {
  const body = push.body || {};
  const call = body.call || {};
  const callee = body.callee || {};
  const pane = $("detail-pane");
  // The body is the call's latest version: its intention, not the first body's, is the call's now.
  const intention = typeof call.intention === "string" ? call.intention : push.intention;
  const title = el("div", { class: "detail-title" },
    el("h2", { text: callee.callee_name || push.callee_number || "Unknown callee" }),
    el("span", { class: "intention big", text: intention || "–" }),
    el("span", { class: "description", text: call.intention_description || "" }));
  pane.replaceChildren(
    title,
    facts([
      ["Callee number", push.callee_number],
      ["Workflow / node", `${push.workflow_name || push.workflow_id} / ${push.node_name || push.node_id}`],
      ["Call", `${push.call_start_time || "?"} → ${push.call_end_time || "?"}`],
      ["Hang-up / ring", `${push.hangup_type || "–"} / ${push.ring_type || "–"}`],
      ["Talk rounds", call.talk_round],
      ["Attempts", call.call_times],
      ["Case", push.case_id],
      ["Deliveries", push.deliveries > 1 ? `${push.deliveries} (duplicates counted)` : push.deliveries],
      ["Versions", push.version_count > 1 ? `${push.version_count}; this is the latest` : ""],
      ["Received", push.first_received_at],
      ["Call id", push.call_id],
      ["Warnings", (push.warnings || []).join("; ")],
    ]),
    section("Forwarding", forwarding(push.forwarding)),
    section("Labels", chips(call.multi_label, "No labels.")),
    section("Slots", chips(call.ner_slots, "No slots.")),
    section("Transcript", transcript(call.asr_result)),
    section("Redials", table(call.redial_call, [
      ["Started", "call_start_time"], ["Ring", "ring_type"], ["Ring s", "ring_time"], ["Hang-up", "hangup_type"],
      ["Result", "result_label"], ["Callee", "callee_number"], ["Caller", "caller_number"],
    ], "No redials.")),
    section("Questions and answers", table(call.question_answer, [
      ["Question", "question_content"], ["Answer", "answer_text"], ["Status", "status"],
      ["Verification", "verification_results"], ["Answered", "whether_answer"],
    ], "No questions asked.")),
    el("details", { class: "block raw" },
      el("summary", { text: `Raw JSON${push.version_count > 1 ? ` (the latest of ${push.version_count} versions)` : ""}` }),
      el("pre", { text: JSON.stringify(push.body, null, 2) ?? "The body was purged." })),
  );
  pane.scrollTop = 0;
}

// -- the deliveries view ------------------------------------------------------------------------------

function destinationCard(d) {
  const paused = d.paused
    ? el("p", { class: "paused", text: `Paused${d.paused.until ? ` until ${shortTime(d.paused.until)}` : " until resumed"}: ${d.paused.reason}` })
    : null;
  return el("div", { class: "destination" },
    el("h3", { text: d.destination }),
    el("span", { text: `${d.pending} pending · ${d.delivered} delivered · ${d.dead} dead` }),
    paused,
    d.last_error ? el("p", { class: "last-error", text: `last error: ${d.last_error}` }) : null);
}

function deliveryRow(job) {
  return el("tr", { "data-id": String(job.id) },
    el("td", {}, el("span", { class: `state ${job.state}`, text: job.state })),
    el("td", { text: job.destination }),
    el("td", { text: job.version ? `${job.call_id} (version ${job.version})` : job.call_id, class: "call" }),
    el("td", { text: String(job.attempts) }),
    el("td", { text: job.last_error || "–" }),
    el("td", { text: job.next_attempt_at ? shortTime(job.next_attempt_at) : "–", title: job.next_attempt_at || "" }),
    el("td", {}, retryButton(job, loadDeliveries)));
}

async function loadDeliveries() {
  // What waits and what gave up, at most a page of each; the counts above cover everything.
  const [destinations, pending, dead] = await Promise.all([
    getJson("/api/destinations"),
    getJson(`/api/deliveries?state=pending&limit=${PAGE}`),
    getJson(`/api/deliveries?state=dead&limit=${PAGE}`),
  ]);
  $("destinations").replaceChildren(...destinations.items.map(destinationCard));
  const jobs = [...dead.items, ...pending.items];
  $("deliveries").tBodies[0].replaceChildren(...jobs.map(deliveryRow));
  $("no-deliveries").hidden = jobs.length > 0;
}

function showView(deliveries) {
  $("workspace").hidden = deliveries;
  $("deliveries-view").hidden = !deliveries;
  $("show-pushes").classList.toggle("current", !deliveries);
  $("show-deliveries").classList.toggle("current", deliveries);
  if (deliveries) loadDeliveries().catch(report);
}

// -- start ----------------------------------------------------------------------------------------

function start() {
  setLive("waiting", "connecting…");
  loadLatest().then(() => { loadRejects().catch(report); return listen(); }).catch(report);
}

$("filter").addEventListener("input", applyFilter);
$("rejects-box").addEventListener("toggle", () => { if ($("rejects-box").open) loadRejects().catch(report); });
$("older").addEventListener("click", () => loadOlder().catch(report));
$("login").addEventListener("submit", useToken);
$("show-pushes").addEventListener("click", () => showView(false));
$("show-deliveries").addEventListener("click", () => showView(true));
start();
