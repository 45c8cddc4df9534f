// The search page: reads the form, calls GET /search, renders hits with DOM nodes only
// (textContent, never innerHTML), so no text from an article or a query becomes markup.
"use strict";

(() => {
  const form = document.getElementById("search");
  const status = document.getElementById("status");
  const list = document.getElementById("results");
  const facets = document.getElementById("facets");
  const SENT = ["q", "mode", "source", "since", "until", "sort", "recency", "k"];

  function node(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function query() {
    const data = new FormData(form);
    const params = new URLSearchParams();
    for (const name of SENT) {
      const value = String(data.get(name) ?? "").trim();
      if (value) params.set(name, value);
    }
    params.set("facets", "true");
    return params;
  }

  function fill(params) {
    for (const name of SENT) {
      const field = form.elements.namedItem(name);
      if (field && params.has(name)) field.value = params.get(name);
    }
  }

  // The passage cut at every hit sentence: [text, kind] with kind "", "match" or "match best".
  // The API's offsets count code points (Python str); JS strings count UTF-16 units.
  function cut(hit) {
    const chars = Array.from(hit.passage);
    const clamp = (n, lo) => Math.max(lo, Math.min(n, chars.length));
    const spans = hit.hits && hit.hits.length ? hit.hits : [hit];
    const parts = [];
    let at = 0;
    for (const span of spans) {
      const a = clamp(span.start - hit.passage_start, at);
      const b = clamp(span.end - hit.passage_start, a);
      const best = span.start === hit.start && span.end === hit.end;
      parts.push([chars.slice(at, a).join(""), ""], [chars.slice(a, b).join(""), best ? "match best" : "match"]);
      at = b;
    }
    parts.push([chars.slice(at).join(""), ""]);
    return parts;
  }

  function viewLink(hit) {
    const id = hit.article_id.split("/").map(encodeURIComponent).join("/");
    return `${form.dataset.viewUrl}${id}?start=${hit.start}&end=${hit.end}#hit`;
  }

  function render(hit) {
    const item = node("li", "hit");
    const title = node("a", "title", hit.title || hit.article_id);
    title.href = viewLink(hit);
    const meta = node("p", "meta");
    if (hit.source) meta.append(node("span", "source", hit.source));
    if (hit.published) {
      const time = node("time", "published", hit.published.slice(0, 10));
      time.dateTime = hit.published;
      meta.append(time);
    }
    meta.append(node("span", "score", `score ${hit.score.toFixed(3)}`));
    const passage = node("blockquote", "passage");
    for (const [text, kind] of cut(hit)) passage.append(kind ? node("mark", kind, text) : text);
    item.append(title, meta, passage);
    return item;
  }

  // Facet counts as filters: a click sets the source, or the month's first and last day.
  function facet(name, count, apply) {
    const item = node("li");
    const label = `${name} (${count})`;
    if (!apply) {
      item.append(node("span", "facet", label));
      return item;
    }
    const button = node("button", "facet", label);
    button.type = "button";
    button.addEventListener("click", () => {
      apply();
      form.requestSubmit();
    });
    item.append(button);
    return item;
  }

  function setField(name, value) {
    form.elements.namedItem(name).value = value;
  }

  function renderFacets(body) {
    facets.replaceChildren();
    if (!body.facets) return;
    const sources = node("ul", "facet-list");
    for (const c of body.facets.source) {
      sources.append(facet(c.value || "no source", c.count, c.value && (() => setField("source", c.value))));
    }
    const months = node("ul", "facet-list");
    for (const c of body.facets.month) {
      const apply = c.value && (() => {
        const [y, m] = c.value.split("-").map(Number);
        const last = new Date(Date.UTC(y, m, 0)).getUTCDate();
        setField("since", `${c.value}-01`);
        setField("until", `${c.value}-${String(last).padStart(2, "0")}`);
      });
      months.append(facet(c.value || "undated", c.count, apply));
    }
    const n = body.facets.articles;
    facets.append(
      node("h2", "", `${n} matching article${n === 1 ? "" : "s"}`),
      node("h3", "", "Source"), sources, node("h3", "", "Month"), months,
    );
  }

  function show(text, kind) {
    status.textContent = text;
    status.className = `status ${kind}`;
    status.setAttribute("role", kind === "error" ? "alert" : "status");
  }

  async function search(params) {
    list.replaceChildren();
    facets.replaceChildren();
    show("Searching…", "busy");
    const headers = { Accept: "application/json" };
    const key = form.elements.namedItem("key");
    if (key && key.value) headers["X-API-Key"] = key.value;
    let response;
    let body;
    try {
      response = await fetch(`${form.dataset.searchUrl}?${params}`, { headers });
      body = await response.json();
    } catch (err) {
      show(`The server did not answer as expected (${err.message}).`, "error");
      return;
    }
    if (!response.ok) {
      show(body.message || `The search failed (HTTP ${response.status}).`, "error");
      return;
    }
    if (body.results.length === 0) {
      const filtered = ["source", "since", "until"].some((name) => params.has(name));
      show(`No passages match “${body.query}”${filtered ? " with these filters" : ""}.`, "empty");
      return;
    }
    const n = body.results.length;
    show(`${n} passage${n === 1 ? "" : "s"} in ${Math.round(body.took_ms)} ms`, "done");
    list.replaceChildren(...body.results.map(render));
    renderFacets(body);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = query();
    history.pushState(null, "", `?${params}`);
    search(params);
  });

  // A shared or reloaded URL (?q=...) runs its search; so do back and forward.
  function fromLocation() {
    const params = new URLSearchParams(location.search);
    if (!params.get("q")) return;
    fill(params);
    search(query());
  }
  window.addEventListener("popstate", fromLocation);
  fromLocation();
})();
