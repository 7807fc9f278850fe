// The live monitor: one company's batches, updated by its event subscription as they sync.
// No build step and no framework: GraphQL over fetch, graphql-transport-ws over WebSocket.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "sync2books.apiKey";
const SHOWN = 50; // batches in the table (the first of documents.graphql's Batches)
const FEED = 12; // transitions in the live list
const LABELS_KEPT = 20000; // item names remembered for the live list

// Every operation the page sends is in documents.graphql, loaded once and named per request:
// the service trusts that file, so the monitor works when TRUSTED_DOCUMENTS=only.
let DOCUMENTS = null;

async function documents() {
  if (DOCUMENTS === null) {
    const response = await fetch("/static/monitor/documents.graphql");
    if (!response.ok) throw new Error(`HTTP ${response.status} for the page's documents`);
    DOCUMENTS = await response.text();
  }
  return DOCUMENTS;
}

const NO_BATCHES = "No batches yet: create expenses, bills or invoices through the API and " +
  "they appear here as they sync.";

function newestBatches() {
  // The view the page opens on: every batch, newest first, live.
  return { status: "", from: "", to: "", pages: [null], hasNext: false };
}

const state = {
  key: null,
  company: null,
  batches: new Map(), // id -> batch, as last fetched
  refreshing: new Map(), // id -> "busy" | "again": one fetch per batch at a time
  alerts: new Map(),
  open: null, // the batch whose failed items are shown
  lastEventId: null, // where the live stream resumes after a reconnect
  socket: null,
  charts: null,
  labels: new Map(), // item id -> how its owner knows it: "Cafe Uno · 12.50 USD · r-1"
  labelPages: new Map(), // batch id -> { after, done, loading }: its items' pages read so far
  budgetDue: null, // the budget is read again at most every 2 s
  view: newestBatches(), // the batches asked for: filters, and the cursor of each page
  search: { reference: "", after: null },
};

function live() {
  // The newest batches, unfiltered: new batches join the table as their events arrive.
  const view = state.view;
  return !view.status && !view.from && !view.to && view.pages.length === 1;
}

async function gql(operationName, variables = {}) {
  const query = await documents();
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${state.key}` },
    body: JSON.stringify({ query, operationName, variables }),
  });
  const body = await response.json().catch(() => ({}));
  const error = body.errors && body.errors[0];
  if (!response.ok || error) {
    const failure = new Error(error ? error.message : `HTTP ${response.status}`);
    failure.code = error && error.extensions && error.extensions.code;
    throw failure;
  }
  return body.data;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function rate(batch) {
  const done = batch.successCount + batch.failedCount;
  return done ? batch.failedCount / done : 0;
}

function progress(batch) {
  // Synced, failed and waiting as one bar, and in words for screen readers.
  const total = Math.max(batch.itemCount, 1);
  const waiting = batch.pendingCount + batch.processingCount;
  const done = Math.round(((batch.successCount + batch.failedCount) / total) * 100);
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.setAttribute("role", "img");
  bar.setAttribute(
    "aria-label",
    `${done}% done: ${batch.successCount} synced, ${batch.failedCount} failed, ` +
      `${waiting} waiting`,
  );
  for (const [count, kind] of [
    [batch.successCount, "synced"],
    [batch.failedCount, "failed"],
    [waiting, "waiting"],
  ]) {
    const part = document.createElement("span");
    part.className = kind;
    part.style.width = `${(count / total) * 100}%`; // CSSOM: allowed by the page's CSP
    bar.append(part);
  }
  bar.title = bar.getAttribute("aria-label");
  return bar;
}

// Why a batch's end is put off, when a ledger limit other than its own pace does it.
const WAITING_FOR = {
  DAY: "the ledger's calls for today are used up: the rest goes after midnight UTC",
  APP: "the app's calls this minute, across every company, are used up",
};

function left(due, waitingFor) {
  // "about 40 s left" from the API's estimate, and why when a limit puts it off; a dash
  // once the batch has ended.
  if (!due) return "—";
  const seconds = Math.max(0, Math.round((new Date(due) - Date.now()) / 1000));
  const amount =
    seconds < 90 ? `${seconds} s` : seconds < 5400 ? `${Math.round(seconds / 60)} min`
      : `${Math.round(seconds / 3600)} h`;
  const why = WAITING_FOR[waitingFor];
  return why ? `about ${amount} left (${why})` : `about ${amount} left`;
}

function render() {
  const body = $("batches").tBodies[0];
  const rows = [...state.batches.values()]
    .sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1))
    .slice(0, SHOWN);
  body.replaceChildren(
    ...rows.map((batch) => {
      const row = document.createElement("tr");
      row.dataset.batchId = batch.id;
      row.tabIndex = 0;
      row.setAttribute("aria-selected", String(batch.id === state.open));
      row.dataset.createdAt = batch.createdAt;
      const id = document.createElement("code");
      id.textContent = batch.id;
      row.insertCell().append(id);
      cell(row, batch.recordType);
      cell(row, batch.status, `status ${batch.status}`);
      cell(row, batch.itemCount, "num");
      cell(row, batch.successCount, "num");
      cell(row, batch.failedCount, batch.failedCount ? "num failing" : "num");
      cell(row, batch.pendingCount + batch.processingCount, "num");
      cell(row, `${Math.round(rate(batch) * 100)}%`, rate(batch) ? "num failing" : "num");
      row.insertCell().append(progress(batch));
      cell(row, Times.when(new Date(batch.createdAt)));
      cell(row, left(batch.estimatedCompletionAt, batch.waitingFor));
      return row;
    }),
  );
  $("no-batches").hidden = state.batches.size > 0;
  $("no-batches").textContent = live() ? NO_BATCHES : "No batches match these filters.";
}

function announce(text) {
  $("announce").textContent = text;
}

async function refresh(batchId) {
  // Coalesced: events that arrive while a fetch is out ask for one more fetch after it.
  if (state.refreshing.has(batchId)) {
    state.refreshing.set(batchId, "again");
    return;
  }
  state.refreshing.set(batchId, "busy");
  try {
    do {
      state.refreshing.set(batchId, "busy");
      const { syncBatch } = await gql("Batch", { id: batchId });
      const before = state.batches.get(batchId);
      if (syncBatch && !before && live()) {
        state.view.total += 1; // a new batch, arrived live
        describeView();
      }
      if (syncBatch && (before || live())) state.batches.set(batchId, syncBatch); // shown only
      if (syncBatch && before && before.status !== syncBatch.status) {
        announce(`Batch ${batchId} is ${syncBatch.status}`);
      }
    } while (state.refreshing.get(batchId) === "again");
  } finally {
    state.refreshing.delete(batchId);
  }
  render();
  if (batchId === state.open) showFailed(batchId);
  showBudget();
}

function showBudget() {
  // Read again while pushes run, but not more than every 2 s however many events arrive.
  if (state.budgetDue) return;
  state.budgetDue = setTimeout(() => {
    state.budgetDue = null;
    readBudget().catch(() => {});
  }, 2000);
}

function meter(id, used, limit) {
  const gauge = $(id);
  gauge.max = limit;
  gauge.high = limit * 0.8; // the last fifth shows as nearly spent
  gauge.value = used;
  const calls = (n) => `${n.toLocaleString()} call${n === 1 ? "" : "s"}`;
  $(`${id}-text`).textContent = `${calls(used)} used, ${calls(limit - used)} left`;
}

async function readBudget() {
  // What the company's ledger allows and what is left of it, beside the batches it paces.
  if (!state.company) return;
  const { connection } = await gql("Budget", { c: state.company.id });
  const limit = connection && connection.rateLimit;
  $("budget").hidden = !limit;
  if (!limit) return;
  $("budget-limits").textContent =
    `${limit.callsPerMinute.toLocaleString()} calls a minute, ${limit.concurrent} at once, up to ` +
    `${limit.documentsPerCall} records a call` +
    (limit.dailyLimit === null ? "." : `; ${limit.dailyLimit.toLocaleString()} calls a day.`);
  meter("budget-minute", limit.callsPerMinute - limit.remainingThisMinute, limit.callsPerMinute);
  const daily = limit.dailyLimit !== null && limit.dailyRemaining !== null;
  for (const part of document.querySelectorAll("#budget .day")) part.hidden = !daily;
  if (daily) meter("budget-day", limit.dailyLimit - limit.dailyRemaining, limit.dailyLimit);
}

async function loadBatches() {
  // The page of batches the filters and pager ask for, newest first, through the API's cursors.
  const view = state.view;
  const iso = (local) => (local ? new Date(local).toISOString() : null);
  const { syncBatches } = await gql("Batches", {
    c: state.company.id,
    status: view.status || null,
    from: iso(view.from),
    to: iso(view.to),
    after: view.pages[view.pages.length - 1],
  });
  state.batches.clear();
  for (const { node } of syncBatches.edges) state.batches.set(node.id, node);
  view.hasNext = syncBatches.pageInfo.hasNextPage;
  view.endCursor = syncBatches.pageInfo.endCursor;
  $("newer").disabled = view.pages.length === 1;
  $("older").disabled = !view.hasNext;
  view.total = syncBatches.totalCount;
  describeView();
  render();
}

function describeView() {
  const view = state.view;
  const batches = view.total === 1 ? "batch" : "batches";
  const which = view.status ? `${view.status} ${batches}` : batches;
  $("filter-state").textContent = live()
    ? `The newest of ${view.total.toLocaleString()} ${which}, updated live.`
    : `Page ${view.pages.length} of ${view.total.toLocaleString()} ${which}` +
      (view.from || view.to ? " in the chosen dates" : "") + "; their rows update live.";
}

async function findRecords(more = false) {
  const search = state.search;
  const { searchItems } = await gql("Search", {
    c: state.company.id,
    reference: search.reference,
    after: more ? search.after : null,
  });
  search.after = searchItems.pageInfo.endCursor;
  const rows = searchItems.edges.map(({ node }) => {
    const row = document.createElement("tr");
    row.dataset.batchId = node.batchId;
    row.tabIndex = 0;
    cell(row, label(node));
    const id = document.createElement("code");
    id.textContent = node.batchId;
    row.insertCell().append(id);
    cell(row, node.status, `status ${node.status}`);
    cell(row, node.error ? node.error.code : "");
    cell(row, Times.when(new Date(node.updatedAt)));
    return row;
  });
  const body = $("found").tBodies[0];
  if (more) body.append(...rows);
  else body.replaceChildren(...rows);
  $("found").hidden = body.rows.length === 0;
  $("found-more").hidden = !searchItems.pageInfo.hasNextPage;
  $("found-none").textContent = searchItems.totalCount
    ? `${searchItems.totalCount} record${searchItems.totalCount === 1 ? "" : "s"} with ` +
      `reference ${search.reference}.`
    : `No record has reference ${search.reference}.`;
}

function label(node) {
  const record = node.record;
  const who = record.vendorName || record.customerName;
  const money = `${record.amount || record.total} ${record.currency}`;
  return [who, money, node.reference].filter(Boolean).join(" · ");
}

async function loadLabels(batchId, pages) {
  try {
    const { syncItems } = await gql("Labels", { id: batchId, after: pages.after });
    if (state.labels.size > LABELS_KEPT) state.labels.clear();
    for (const { node } of syncItems.edges) state.labels.set(node.id, label(node));
    pages.after = syncItems.pageInfo.endCursor;
    pages.done = !syncItems.pageInfo.hasNextPage;
  } catch {
    pages.done = true; // the line keeps the item's id
  } finally {
    pages.loading = null;
  }
}

async function labelOf(batchId, itemId) {
  // The batch's items are read a page at a time, once, as their events are shown.
  let pages = state.labelPages.get(batchId);
  if (!pages) {
    pages = { after: null, done: false, loading: null };
    state.labelPages.set(batchId, pages);
  }
  while (!state.labels.has(itemId) && !pages.done) {
    pages.loading = pages.loading || loadLabels(batchId, pages);
    await pages.loading;
  }
  return state.labels.get(itemId);
}

const OPERATIONS = { UPDATE: "update of ", VOID: "void of " }; // a create is the record itself

function describe(event, name) {
  const what = event.attachmentId
    ? `receipt of ${name}`
    : event.itemId
      ? `${OPERATIONS[event.operation] || ""}${name}`
      : `batch ${event.batchId}`;
  const error = event.error ? ` (${event.error.code})` : "";
  const time = Times.clockSeconds(new Date(event.occurredAt));
  return `${time} ${what}: ${event.fromStatus || "new"} → ${event.toStatus}${error}`;
}

function onEvent(event) {
  state.lastEventId = event.eventId;
  if (state.charts) state.charts.onEvent(event);
  const feed = $("feed");
  const line = document.createElement("li");
  const known = event.itemId && state.labels.get(event.itemId);
  line.textContent = describe(event, known || event.itemId);
  feed.prepend(line);
  while (feed.children.length > FEED) feed.lastChild.remove();
  if (event.itemId && !known) {
    labelOf(event.batchId, event.itemId).then((name) => {
      if (name && line.isConnected) line.textContent = describe(event, name);
    });
  }
  refresh(event.batchId);
}

function renderAlerts() {
  $("alerts").replaceChildren(
    ...[...state.alerts.values()].map((alert) => {
      const box = document.createElement("p");
      box.className = "alert";
      box.textContent = `${alert.kind.replace("_", " ").toLowerCase()}: ${alert.message}`;
      return box;
    }),
  );
}

function onAlert(alert) {
  if (alert.status === "ACTIVE") state.alerts.set(alert.id, alert);
  else state.alerts.delete(alert.id);
  renderAlerts();
}

async function showFailed(batchId) {
  state.open = batchId;
  const batch = state.batches.get(batchId);
  $("batch").hidden = false;
  $("batch-title").textContent = `Failed items of ${batchId}`;
  $("batch-summary").textContent = batch
    ? `${batch.status}: ${batch.successCount} synced, ${batch.failedCount} failed, ` +
      `${batch.pendingCount + batch.processingCount} waiting.`
    : "";
  const attachments = showAttachments(batchId);
  const { failedItems } = await gql("Failed", { id: batchId });
  if (state.open !== batchId) return;
  $("failed").tBodies[0].replaceChildren(
    ...failedItems.edges.map(({ node }) => {
      const row = document.createElement("tr");
      cell(row, label(node));
      cell(row, node.error ? node.error.code : "");
      cell(row, node.error ? node.error.message : "");
      cell(row, node.error ? node.error.hint : "");
      cell(row, node.attempts, "num");
      const history = document.createElement("button");
      history.type = "button";
      history.textContent = "History";
      history.setAttribute("aria-label", `History of ${label(node)}`);
      history.addEventListener("click", () => showHistory(node.recordId));
      row.insertCell().append(history);
      return row;
    }),
  );
  $("history-box").hidden = true;
  $("no-failed").hidden = failedItems.totalCount > 0;
  $("retry").disabled = failedItems.totalCount === 0;
  render();
  await attachments;
}

async function showHistory(recordId) {
  // A record's operations, newest first: its create, updates and void, and how each ended.
  const { record } = await gql("History", { id: recordId });
  if (!record) return;
  const state = record.voided ? "voided" : `the ledger holds operation ${record.version}`;
  $("history-summary").textContent =
    `${record.recordType.toLowerCase()} ${record.id}: ${state}` +
    (record.externalId ? ` (document ${record.externalId}).` : ", not in the ledger yet.");
  $("history").tBodies[0].replaceChildren(
    ...record.items.edges.map(({ node }) => {
      const row = document.createElement("tr");
      cell(row, node.sequence, "num");
      cell(row, node.operation.toLowerCase());
      cell(row, node.status, `status ${node.status}`);
      cell(row, node.error ? `${node.error.code}: ${node.error.message}` : node.note || "");
      cell(row, Times.clockSeconds(new Date(node.updatedAt)));
      return row;
    }),
  );
  $("history-box").hidden = false;
  $("history-box").scrollIntoView({ block: "nearest" });
}

async function showAttachments(batchId) {
  const { syncItems } = await gql("Attachments", { id: batchId });
  if (state.open !== batchId) return;
  const rows = syncItems.edges.flatMap(({ node }) =>
    node.attachments.map((file) => {
      const row = document.createElement("tr");
      cell(row, node.reference || node.id);
      const link = document.createElement("a");
      link.href = file.downloadUrl;
      link.download = file.fileName;
      link.textContent = file.fileName;
      row.insertCell().append(link);
      cell(row, file.size.toLocaleString(), "num");
      cell(row, file.status, `status ${file.status}`);
      cell(row, file.error ? `${file.error.code}: ${file.error.message}` : "");
      return row;
    }),
  );
  $("attachments").tBodies[0].replaceChildren(...rows);
  $("no-attachments").hidden = rows.length > 0;
}

function setLive(on) {
  $("live").textContent = on ? "live" : "reconnecting…";
  $("live").classList.toggle("on", on);
}

function connectLive() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/graphql`, "graphql-transport-ws");
  state.socket = socket;
  const send = (message) => socket.send(JSON.stringify(message));
  socket.onopen = () =>
    send({ type: "connection_init", payload: { Authorization: `Bearer ${state.key}` } });
  socket.onmessage = ({ data }) => {
    const message = JSON.parse(data);
    if (message.type === "connection_ack") {
      const c = state.company.id;
      const subscribe = (id, operationName, variables) =>
        send({ id, type: "subscribe", payload: { query: DOCUMENTS, operationName, variables } });
      // From the start of the log when the company had no event yet: none is lost to a drop.
      subscribe("events", "Events", { c, after: state.lastEventId ?? "0" });
      subscribe("alerts", "AlertStream", { c });
      setLive(true);
    } else if (message.type === "ping") {
      send({ type: "pong" });
    } else if (message.type === "next" && message.id === "events") {
      onEvent(message.payload.data.companySyncEvents);
    } else if (message.type === "next" && message.id === "alerts") {
      onAlert(message.payload.data.companyAlerts);
    } else if (message.type === "error" && message.id === "events") {
      const expired = message.payload.some((e) => e.extensions?.code === "EVENTS_EXPIRED");
      if (expired) {
        // Away past the log's retention: what happened meanwhile is read again, then followed.
        const key = state.key;
        signOut();
        signIn(key);
      }
    }
  };
  socket.onclose = (closed) => {
    if (state.socket !== socket) return; // signed out
    setLive(false);
    if (closed.code === 4401 || closed.code === 4403) {
      signOut(`The key is no longer valid (${closed.code} ${closed.reason}).`);
    } else {
      setTimeout(connectLive, 1000);
    }
  };
}

async function signIn(key) {
  state.key = key;
  const { company } = await gql("Company");
  state.company = company;
  state.lastEventId = company.lastEventId; // the stream starts from now: the list is loaded
  const [{ alerts }, { syncStats }] = await Promise.all([
    gql("Alerts", { c: company.id }),
    gql("Stats", { c: company.id }),
    loadBatches(),
  ]);
  for (const alert of alerts) state.alerts.set(alert.id, alert);
  sessionStorage.setItem(KEY, key);
  $("company-name").textContent = company.name;
  $("sign-in").hidden = true;
  $("who").hidden = false;
  $("dashboard").hidden = false;
  render();
  renderAlerts();
  state.charts = new Charts(syncStats); // once the dashboard is shown: it sizes to it
  readBudget();
  connectLive();
}

function signOut(why = "") {
  sessionStorage.removeItem(KEY);
  const socket = state.socket;
  if (state.charts) state.charts.destroy();
  clearTimeout(state.budgetDue);
  Object.assign(state, {
    key: null, company: null, open: null, socket: null, lastEventId: null, charts: null,
    budgetDue: null,
  });
  state.batches.clear();
  state.alerts.clear();
  state.labels.clear();
  state.labelPages.clear();
  state.view = newestBatches();
  $("filters").reset();
  $("found").hidden = true;
  $("found-more").hidden = true;
  $("found-none").textContent = "";
  if (socket) socket.close();
  $("dashboard").hidden = true;
  $("batch").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = why;
}

function openRow(target) {
  // The batch's details are further down the page: bring them into view, and focus their
  // heading so a keyboard or screen-reader user is there too.
  const row = target.closest("tr[data-batch-id]");
  if (!row) return;
  showFailed(row.dataset.batchId);
  $("batch-title").focus({ preventScroll: true });
  $("batch").scrollIntoView({ block: "start", behavior: "smooth" });
}

function opensBatches(table) {
  // A row with a batch id opens that batch, by click or by Enter or Space on the row.
  table.addEventListener("click", (clicked) => openRow(clicked.target));
  table.addEventListener("keydown", (pressed) => {
    if (pressed.key === "Enter" || pressed.key === " ") {
      pressed.preventDefault();
      openRow(pressed.target);
    }
  });
}

function showBatches() {
  loadBatches().catch((error) => announce(error.message));
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in").addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    $("sign-in-error").textContent = "";
    try {
      await signIn($("api-key").value.trim());
      $("api-key").value = "";
    } catch (error) {
      signOut(error.code === "UNAUTHENTICATED" ? "That key is not valid." : error.message);
    }
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("filters").addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    Object.assign(state.view, {
      status: $("filter-status").value,
      from: $("filter-from").value,
      to: $("filter-to").value,
      pages: [null],
    });
    showBatches();
  });
  $("filter-clear").addEventListener("click", () => {
    $("filters").reset();
    state.view = newestBatches();
    showBatches();
  });
  $("older").addEventListener("click", () => {
    state.view.pages.push(state.view.endCursor);
    showBatches();
  });
  $("newer").addEventListener("click", () => {
    state.view.pages.pop();
    showBatches();
  });
  $("search").addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    state.search = { reference: $("search-reference").value.trim(), after: null };
    findRecords().catch((error) => announce(error.message));
  });
  $("found-more").addEventListener("click", () =>
    findRecords(true).catch((error) => announce(error.message)),
  );
  opensBatches($("found"));
  opensBatches($("batches"));
  $("retry").addEventListener("click", async () => {
    const batchId = state.open;
    $("retry").disabled = true;
    try {
      const { retryFailedItems } = await gql("Retry", { id: batchId });
      announce(`Retrying ${retryFailedItems.items.length} items of ${batchId}`);
    } catch (error) {
      announce(error.message);
    }
    refresh(batchId);
  });
  const kept = sessionStorage.getItem(KEY);
  if (kept) signIn(kept).catch(() => signOut());
});
