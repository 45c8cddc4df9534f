// The search page: reads the form, calls GET /search, renders hits with DOM nodes only
// (textContent, never innerHTML), so no text from an article or a query becomes markup.
"use strict";

(() => {
  const form = document.getElementById("search");
  const status = document.getElementById("status");
  const list = document.getElementById("results");
  const SENT = ["q", "mode", "source", "since", "until", "k"];

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
    return params;
  }

  function fill(params) {
    for (const name of SENT) {
      const field = form.elements.namedItem(name);
      if (field && params.has(name)) field.value = params.get(name);
    }
  }

  // The API's offsets count code points (Python str); JS strings count UTF-16 units.
  function cut(hit) {
    const chars = Array.from(hit.passage);
    const clamp = (n, lo) => Math.max(lo, Math.min(n, chars.length));
    const a = clamp(hit.start - hit.passage_start, 0);
    const b = clamp(hit.end - hit.passage_start, a);
    return [chars.slice(0, a), chars.slice(a, b), chars.slice(b)].map((part) => part.join(""));
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
    const [before, match, after] = cut(hit);
    const passage = node("blockquote", "passage");
    passage.append(before, node("mark", "match", match), after);
    item.append(title, meta, passage);
    return item;
  }

  function show(text, kind) {
    status.textContent = text;
    status.className = `status ${kind}`;
    status.setAttribute("role", kind === "error" ? "alert" : "status");
  }

  async function search(params) {
    list.replaceChildren();
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
