// The list of instances: counts per status, filters kept in the URL, pages by continuation token.

import { api } from "./api.js";
import { h, clear, statusBadge, statusLabel, timeCell, instanceLink, STATUSES } from "./util.js";

const RANGES = { "15m": 15 * 60e3, "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
const RANGE_LABELS = {
  "": "Any time", "15m": "Last 15 minutes", "1h": "Last hour", "24h": "Last 24 hours", "7d": "Last 7 days",
  "30d": "Last 30 days", custom: "Between…",
};
const PAGE_SIZES = ["25", "50", "100", "200"];
const COUNTS_EVERY_MS = 12_000;
// The pages before this one, for "Previous": kept while the filters stay the same.
const pages = { key: "", tokens: [] };

function statusesOf(params) {
  return (params.get("status") ?? "").split(",").map((s) => s.trim().toUpperCase()).filter(Boolean);
}

// The API's query for the filters of the URL (a relative time range counts back from now).
function apiQuery(params) {
  const query = {};
  for (const key of ["name", "idPrefix", "customStatus", "parentInstanceID", "order", "createdFrom", "createdTo"]) {
    const value = params.get(key);
    if (value) query[key] = value;
  }
  const range = params.get("created");
  if (range && RANGES[range]) query.createdFrom = new Date(Date.now() - RANGES[range]).toISOString();
  const statuses = statusesOf(params);
  if (statuses.length) query.status = statuses.join(",");
  // The menu offers a few sizes; a shared link may carry any size the API accepts.
  const size = Number(params.get("pageSize"));
  query.pageSize = Number.isInteger(size) && size >= 1 && size <= 1000 ? String(size) : "50";
  return query;
}

function localInput(iso) {
  const ms = Date.parse(iso ?? "");
  if (Number.isNaN(ms)) return "";
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function field(label, control, extra = "") {
  return h("div", { class: `field ${extra}` }, h("label", { for: control.id }, label), control);
}

function select(id, name, options, value) {
  return h("select", { id, name },
    Object.entries(options).map(([v, text]) => h("option", { value: v, selected: v === value }, text)));
}

export function listView({ main, navigate }, params) {
  const after = params.get("after");
  const filterKey = [...params].filter(([k]) => k !== "after").map((kv) => kv.join("=")).join("&");
  if (pages.key !== filterKey) Object.assign(pages, { key: filterKey, tokens: [] });
  const statuses = statusesOf(params);
  const search = params.get("customStatus") ? "customStatus" : "idPrefix";
  const range = params.get("created") ?? (params.get("createdFrom") || params.get("createdTo") ? "custom" : "");

  const goTo = (changes) => {
    const next = new URLSearchParams(params);
    next.delete("after");
    for (const [key, value] of Object.entries(changes)) {
      if (value) next.set(key, value);
      else next.delete(key);
    }
    const text = next.toString();
    navigate(`/dashboard/${text ? `?${text}` : ""}`);
  };

  // -- the filter form
  const searchMode = select("search-in", "searchIn", { idPrefix: "ID prefix", customStatus: "Custom status" }, search);
  const searchBox = h("input", {
    id: "search", name: "search", type: "search", value: params.get(search) ?? "", autocomplete: "off",
    placeholder: search === "idPrefix" ? "order-" : "text in the custom status",
  });
  searchMode.addEventListener("change", () => {
    searchBox.placeholder = searchMode.value === "idPrefix" ? "order-" : "text in the custom status";
  });
  const nameBox = h("input", { id: "name", name: "name", value: params.get("name") ?? "", list: "names", autocomplete: "off" });
  const names = h("datalist", { id: "names" });
  const rangeSelect = select("created", "created", RANGE_LABELS, range);
  const fromBox = h("input", { id: "created-from", type: "datetime-local", value: localInput(params.get("createdFrom")) });
  const toBox = h("input", { id: "created-to", type: "datetime-local", value: localInput(params.get("createdTo")) });
  const custom = h("div", { class: "custom-range", hidden: range !== "custom" },
    field("Created from", fromBox), field("Created to", toBox));
  rangeSelect.addEventListener("change", () => {
    custom.hidden = rangeSelect.value !== "custom";
  });
  const order = select("order", "order", { newest: "Newest first", oldest: "Oldest first" }, params.get("order") ?? "newest");
  const size = apiQuery(params).pageSize;
  const pageSize = select("page-size", "pageSize",
    Object.fromEntries([...new Set([...PAGE_SIZES, size])].map((s) => [s, `${s} a page`])), size);

  const form = h("form", { class: "filters card", role: "search", "aria-label": "Filter instances" },
    h("div", { class: "search-row" },
      field("Search in", searchMode, "narrow"), field("Search", searchBox, "grow")),
    h("div", { class: "filter-row" },
      field("Workflow name", nameBox), names, field("Created", rangeSelect), custom, field("Order", order),
      field("Page size", pageSize, "narrow")),
    h("div", { class: "form-actions" },
      h("button", { type: "submit", class: "primary" }, "Apply filters"),
      h("button", { type: "button", id: "clear-filters", onclick: () => navigate("/dashboard/") }, "Clear all")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = rangeSelect.value;
    goTo({
      idPrefix: searchMode.value === "idPrefix" ? searchBox.value.trim() : "",
      customStatus: searchMode.value === "customStatus" ? searchBox.value.trim() : "",
      name: nameBox.value.trim(),
      created: chosen === "custom" ? "" : chosen,
      createdFrom: chosen === "custom" && fromBox.value ? new Date(fromBox.value).toISOString() : "",
      createdTo: chosen === "custom" && toBox.value ? new Date(toBox.value).toISOString() : "",
      order: order.value === "newest" ? "" : order.value,
      pageSize: pageSize.value === "50" ? "" : pageSize.value,
    });
  });
  for (const control of [order, pageSize]) control.addEventListener("change", () => form.requestSubmit());

  // On a phone the filters fold away (unless some are set), so that the list comes first.
  const filtered = [...params.keys()].some((k) => !["after", "status"].includes(k));
  const filterPanel = h("details", {
    class: "filter-panel", open: filtered || !matchMedia("(max-width: 760px)").matches,
  }, h("summary", {}, "Filters and search"), form);

  // -- counts per status, which also toggle the status filter
  const counts = h("div", { class: "counts", role: "group", "aria-label": "Filter by status" });
  const toggleStatus = (status) => {
    const chosen = new Set(statuses);
    if (chosen.has(status)) chosen.delete(status);
    else chosen.add(status);
    goTo({ status: STATUSES.filter((s) => chosen.has(s)).join(",") });
  };
  const renderCounts = (byStatus) => {
    const total = Object.values(byStatus).reduce((a, b) => a + b, 0);
    clear(counts,
      h("button", { type: "button", class: "count count-all", "aria-pressed": String(!statuses.length),
        onclick: () => goTo({ status: "" }) }, h("span", { class: "count-label" }, "All"), h("strong", {}, total.toLocaleString())),
      STATUSES.filter((s) => byStatus[s] || statuses.includes(s) || ["RUNNING", "COMPLETED", "FAILED"].includes(s))
        .map((s) => h("button", {
          type: "button", class: `count status-${s.toLowerCase()}`, "aria-pressed": String(statuses.includes(s)),
          dataset: { status: s }, onclick: () => toggleStatus(s),
        }, h("span", { class: "count-label" }, statusLabel(s)), h("strong", {}, (byStatus[s] ?? 0).toLocaleString()))));
  };

  // -- the table and the pager
  const error = h("div", { class: "error-banner", role: "alert", hidden: true });
  const body = h("tbody");
  const table = h("table", { class: "instances" },
    h("caption", { class: "visually-hidden" }, "Workflow instances"),
    h("thead", {}, h("tr", {}, ["Status", "Workflow", "Instance ID", "Created", "Updated"].map((c) => h("th", { scope: "col" }, c)))),
    body);
  const empty = h("p", { class: "empty", hidden: true });
  const previous = h("button", { type: "button", id: "previous-page" }, "← Previous");
  const next = h("button", { type: "button", id: "next-page" }, "Next →");
  const pageLabel = h("span", { class: "page-label", "aria-live": "polite" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" }, previous, pageLabel, next);
  let nextToken = null;
  previous.addEventListener("click", () => {
    const token = pages.tokens.pop();
    const target = new URLSearchParams(params);
    if (token) target.set("after", token);
    else target.delete("after");
    navigate(`/dashboard/?${target}`);
  });
  next.addEventListener("click", () => {
    if (!nextToken) return;
    pages.tokens.push(after ?? "");
    const target = new URLSearchParams(params);
    target.set("after", nextToken);
    navigate(`/dashboard/?${target}`);
  });

  const chips = [];
  if (params.get("parentInstanceID")) {
    chips.push(h("span", { class: "chip" }, "Children of ", instanceLink(params.get("parentInstanceID")),
      h("button", { type: "button", class: "ghost small", "aria-label": "Remove the parent filter",
        onclick: () => goTo({ parentInstanceID: "" }) }, "×")));
  }

  clear(main,
    h("div", { class: "page-head" }, h("h1", {}, "Workflow instances")),
    counts, filterPanel, chips.length ? h("p", { class: "chips" }, chips) : null, error,
    h("div", { class: "table-wrap" }, table), empty, pager);
  renderCounts({});

  let lastList = "";
  let lastCounts = "";
  let alive = true;

  const renderRows = (instances) => {
    clear(body, instances.map((inst) => h("tr", { dataset: { instanceId: inst.instanceID, status: inst.runtimeStatus } },
      h("td", { "data-label": "Status" }, statusBadge(inst.runtimeStatus)),
      h("td", { "data-label": "Workflow" }, inst.workflowName),
      h("td", { "data-label": "Instance ID", class: "id-cell" }, instanceLink(inst.instanceID)),
      h("td", { "data-label": "Created" }, timeCell(inst.createdAt)),
      h("td", { "data-label": "Updated" }, timeCell(inst.lastUpdatedAt)))));
    clear(names, [...new Set(instances.map((i) => i.workflowName))].map((n) => h("option", { value: n })));
    const filtered = [...params.keys()].some((k) => k !== "order" && k !== "pageSize");
    empty.hidden = instances.length > 0;
    empty.textContent = after ? "No more instances." : filtered
      ? "No instances match these filters."
      : "No workflow instances yet. Start one with the HTTP API or a Dapr workflow client.";
    table.hidden = instances.length === 0;
  };

  // Counting asks more of a large store than a page does: the counts refresh less often.
  let countedAt = 0;
  const showList = (listed) => {
    const text = JSON.stringify(listed);
    if (text !== lastList) {
      lastList = text;
      renderRows(listed.instances ?? []);
      nextToken = listed.continuationToken ?? null;
    } else {
      // The relative times move on even when nothing else changed.
      for (const t of body.querySelectorAll("time")) t.replaceWith(timeCell(t.getAttribute("datetime")));
    }
    previous.disabled = !after;
    next.disabled = !nextToken;
    pageLabel.textContent = `Page ${pages.tokens.length + 1}`;
  };
  const showCounts = (counted) => {
    const text = JSON.stringify(counted);
    if (text !== lastCounts) {
      lastCounts = text;
      renderCounts(counted.counts ?? {});
    }
  };

  // The page shows as soon as it comes; the counts, which take longer on a large store, follow.
  async function refresh() {
    const query = apiQuery(params);
    const recount = Date.now() - countedAt > COUNTS_EVERY_MS;
    if (recount) countedAt = Date.now();
    const results = await Promise.allSettled([
      api.list({ ...query, continuationToken: after ?? undefined }).then((listed) => alive && showList(listed)),
      recount ? api.counts(query).then((counted) => alive && showCounts(counted)) : null,
    ]);
    if (!alive) return;
    const failed = results.find((r) => r.status === "rejected");
    error.hidden = !failed;
    error.textContent = failed ? failed.reason.message : "";
  }

  refresh();
  return { refresh, destroy: () => { alive = false; } };
}
