// The cacheback dashboard: polls /v1/cache/dashboard and draws it. No framework, no
// build step; every value reaches the page through textContent or an SVG attribute,
// never as markup.
"use strict";

(function () {
  const POLL_MS = 2000;
  const KEY_ITEM = "cacheback-admin-key";
  const SVG = "http://www.w3.org/2000/svg";
  const TIER_ORDER = ["exact", "verbatim", "synthesis", "upstream", "miss", "blocked", "bypass", "error", "none"];
  // "none": requests outside the cached APIs (pass-through to the provider).
  const TIER_LABEL = { none: "pass-through" };
  const label = (t) => TIER_LABEL[t] || t;
  const TIER_COLOR = {
    exact: "#1b7f5a", verbatim: "#3bb273", synthesis: "#7b61c9", upstream: "#e38b2c",
    miss: "#a9b4c2", blocked: "#d64545", bypass: "#6b7a8f", error: "#8c2f39", none: "#cfd6de",
  };
  let range = "hour";
  let last = null;
  let timer = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  function key() { return sessionStorage.getItem(KEY_ITEM) || ""; }

  async function api(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (key()) headers["Authorization"] = "Bearer " + key();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit",
    });
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    return { status: resp.status, data };
  }

  function errorText(result) {
    const err = result.data && result.data.error;
    return (err && err.message) ? err.message : "HTTP " + result.status;
  }

  const num = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "–");
  const pct = (r) => (typeof r === "number" ? (100 * r).toFixed(1) + " %" : "–");
  const usd = (v) => (typeof v === "number" ? "$" + v.toFixed(v >= 100 ? 0 : v >= 1 ? 2 : 4) : "–");

  function bytes(n) {
    if (typeof n !== "number") return "";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return n.toFixed(i ? 1 : 0) + " " + units[i];
  }

  function clock(epochSeconds) {
    const d = new Date(epochSeconds * 1000);
    return d.toTimeString().slice(0, 5);
  }

  function orderedTiers(tiers) {
    const names = Object.keys(tiers);
    return names.sort((a, b) => {
      const ia = TIER_ORDER.indexOf(a), ib = TIER_ORDER.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || (a < b ? -1 : 1);
    });
  }

  // -- charts --------------------------------------------------------------------------

  function drawRequests(target, s) {
    const W = 960, H = 220, L = 44, B = 22, T = 8, R = 8;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "requests per tier" });
    const tiers = orderedTiers(s.tiers);
    const totals = new Array(s.points).fill(0);
    for (const t of tiers) s.tiers[t].forEach((n, i) => { totals[i] += n; });
    const max = Math.max(1, ...totals);
    const plotW = W - L - R, plotH = H - T - B;
    const bw = plotW / s.points;
    for (const frac of [0, 0.5, 1]) {
      const y = T + plotH - frac * plotH;
      root.appendChild(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }));
      const label = svg("text", { x: L - 6, y: y + 4, "text-anchor": "end", class: "axis" });
      label.textContent = String(Math.round(frac * max));
      root.appendChild(label);
    }
    const base = new Array(s.points).fill(0);
    for (const t of tiers) {
      const g = svg("g", { fill: TIER_COLOR[t] || "#999", "data-tier": t });
      s.tiers[t].forEach((n, i) => {
        if (!n) return;
        const h = (n / max) * plotH;
        const y = T + plotH - ((base[i] / max) * plotH) - h;
        const rect = svg("rect", { x: L + i * bw + bw * 0.1, y, width: Math.max(1, bw * 0.8), height: h });
        const tip = svg("title");
        tip.textContent = `${label(t)}: ${n} at ${clock(s.start + i * s.step_s)}`;
        rect.appendChild(tip);
        g.appendChild(rect);
        base[i] += n;
      });
      root.appendChild(g);
    }
    const ticks = 6;
    for (let k = 0; k <= ticks; k++) {
      const i = Math.min(s.points - 1, Math.round((k * (s.points - 1)) / ticks));
      const label = svg("text", { x: L + i * bw + bw / 2, y: H - 6, "text-anchor": "middle", class: "axis" });
      label.textContent = clock(s.start + i * s.step_s);
      root.appendChild(label);
    }
    const total = totals.reduce((a, b) => a + b, 0);
    root.setAttribute("data-total", String(total));
    target.replaceChildren(root);
    const legend = $("legend");
    legend.replaceChildren(...tiers.map((t) => {
      const item = el("span", null, "legend-item");
      const swatch = svg("svg", { width: 12, height: 12, viewBox: "0 0 12 12" });
      swatch.appendChild(svg("rect", { width: 12, height: 12, rx: 2, fill: TIER_COLOR[t] || "#999" }));
      item.appendChild(swatch);
      item.appendChild(el("span", `${label(t)} ${s.tiers[t].reduce((a, b) => a + b, 0)}`));
      return item;
    }));
  }

  function drawHitRate(target, s) {
    const W = 960, H = 90, L = 44, B = 6, T = 8, R = 8;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "hit rate" });
    const plotW = W - L - R, plotH = H - T - B;
    const step = plotW / Math.max(1, s.points - 1);
    for (const frac of [0, 1]) {
      const y = T + plotH - frac * plotH;
      root.appendChild(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }));
      const label = svg("text", { x: L - 6, y: y + 4, "text-anchor": "end", class: "axis" });
      label.textContent = frac ? "100%" : "0%";
      root.appendChild(label);
    }
    let d = "", points = 0;
    s.hit_rate.forEach((r, i) => {
      if (r === null) return;  // no lookups in that interval: a gap, not a zero
      const x = L + i * step, y = T + plotH - r * plotH;
      d += (d && s.hit_rate[i - 1] !== null ? " L" : " M") + x.toFixed(1) + " " + y.toFixed(1);
      root.appendChild(svg("circle", { cx: x, cy: y, r: 2.5, class: "dot" }));
      points += 1;
    });
    if (d) root.appendChild(svg("path", { d: d.trim(), class: "line" }));
    root.setAttribute("data-points", String(points));
    target.replaceChildren(root);
  }

  // -- tables --------------------------------------------------------------------------

  function row(cells) {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? "" : String(c);
      tr.appendChild(td);
    }
    return tr;
  }

  function fill(tableId, rows, empty) {
    const body = $(tableId).tBodies[0];
    if (!rows.length) {
      const cols = $(tableId).tHead ? $(tableId).tHead.rows[0].cells.length : 2;
      const tr = document.createElement("tr");
      const td = el("td", empty, "muted");
      td.colSpan = cols;
      tr.appendChild(td);
      body.replaceChildren(tr);
      return;
    }
    body.replaceChildren(...rows);
  }

  function statusCell(ok) {
    return el("span", ok ? "ok" : "down", ok ? "pill ok" : "pill bad");
  }

  function render(d) {
    last = d;
    const t = d.totals;
    $("t-lookups").textContent = num(t.lookups);
    $("t-hit-rate").textContent = pct(t.hit_rate);
    $("t-saved").textContent = usd(t.net_saved_usd);
    $("t-saved-sub").textContent = `${usd(t.saved_usd)} avoided · ${usd(t.spent_usd)} spent`;
    $("t-tokens").textContent = num(t.saved_tokens);
    $("t-entries").textContent = num(d.entries.count);
    $("t-size").textContent = bytes(d.entries.size_bytes);
    $("t-negative").textContent = num(d.negative.count);
    $("worker").textContent = `worker ${d.worker} · ${num(t.requests)} requests since start`;
    const ok = d.health.ready;
    const status = $("status");
    status.textContent = ok ? "healthy" : "degraded";
    status.className = ok ? "pill ok" : "pill bad";
    $("updated").textContent = "updated " + new Date(d.generated_at * 1000).toLocaleTimeString("en-GB");

    const s = d.series[range];
    drawRequests($("chart-requests"), s);
    drawHitRate($("chart-hit-rate"), s);

    const lat = d.latency_ms || {};
    fill("latency", orderedTiers(lat).map((tier) => {
      const v = lat[tier];
      return row([tier, num(v.count), v.p50_ms, v.p95_ms, v.p99_ms]);
    }), "no requests yet");

    const h = d.health;
    const healthRows = [
      row(["Engine", statusCell(h.ready), ""]),
      row(["Store", statusCell(h.store.ok),
        [h.store.backend, h.store.index, h.store.index_size !== null && h.store.index_size !== undefined
          ? `${h.store.index_size} vectors` : null, h.store.error].filter(Boolean).join(" · ")]),
    ];
    for (const e of h.embedders) {
      healthRows.push(row([`Embedder ${e.name || ""}`, statusCell(e.ok),
        [e.model, e.dim ? `${e.dim} dims` : null, e.compute].filter(Boolean).join(" · ")]));
    }
    if (!h.embedders.length) healthRows.push(row(["Embedder", "none", "exact matches only"]));
    $("health").tBodies[0].replaceChildren(...healthRows);

    $("top-note").textContent = d.content_display
      ? ""
      : "Question text is hidden (start the proxy with CACHEBACK_DASHBOARD_CONTENT=1 to show it).";
    if (d.top_questions === null) {
      fill("top", [], "this store does not rank entries by hits");
    } else {
      fill("top", d.top_questions.map((q) => row([q.entry_id, num(q.hits),
        d.content_display ? q.query : el("span", "hidden", "muted")])), "no hits yet");
    }

    const vetoes = Object.entries(d.guard_vetoes);
    const vmax = Math.max(1, ...vetoes.map((v) => v[1]));
    const vbox = $("vetoes");
    if (!vetoes.length) {
      vbox.replaceChildren(el("p", "no vetoes yet", "muted"));
    } else {
      vbox.replaceChildren(...vetoes.map(([reason, n]) => {
        const line = el("div", null, "bar-row");
        line.appendChild(el("span", reason, "bar-label"));
        const bar = svg("svg", { viewBox: "0 0 100 10", preserveAspectRatio: "none", class: "bar" });
        bar.appendChild(svg("rect", { width: (100 * n) / vmax, height: 10, rx: 1, fill: "#d64545" }));
        line.appendChild(bar);
        line.appendChild(el("span", num(n), "bar-value"));
        return line;
      }));
    }

    fill("negative", d.negative.entries.map((e) => {
      const actions = el("span", null, "actions");
      const fp = el("button", "False positive");
      fp.type = "button";
      fp.dataset.action = "false-positive";
      fp.dataset.id = String(e.entry_id);
      const rm = el("button", "Remove", "danger");
      rm.type = "button";
      rm.dataset.action = "remove";
      rm.dataset.id = String(e.entry_id);
      actions.append(fp, rm);
      const tr = row([e.entry_id, e.query, e.reason, e.category, num(e.false_positives), actions]);
      tr.dataset.id = String(e.entry_id);
      return tr;
    }), "the negative cache is empty");
  }

  // -- polling and actions ---------------------------------------------------------------

  async function poll() {
    clearTimeout(timer);
    try {
      const result = await api("GET", "/v1/cache/dashboard");
      if (result.status === 401) {
        showLogin(key() ? errorText(result) : "");
        return;
      }
      if (result.status !== 200 || !result.data) throw new Error(errorText(result));
      $("login").hidden = true;
      $("main").hidden = false;
      $("logout").hidden = !key();
      render(result.data);
    } catch (err) {
      const status = $("status");
      status.textContent = "unreachable";
      status.className = "pill bad";
    }
    timer = setTimeout(poll, POLL_MS);
  }

  function showLogin(message) {
    $("main").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message;
    $("status").textContent = "locked";
    $("status").className = "pill";
  }

  async function negativeAction(event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const id = button.dataset.id;
    const path = button.dataset.action === "remove"
      ? `/v1/cache/negative/${encodeURIComponent(id)}`
      : `/v1/cache/negative/${encodeURIComponent(id)}/false-positive`;
    button.disabled = true;
    const result = await api(button.dataset.action === "remove" ? "DELETE" : "POST", path);
    $("negative-error").textContent = result.status === 200 ? "" : errorText(result);
    await poll();
  }

  async function negativeAdd(event) {
    event.preventDefault();
    const body = { query: $("neg-query").value };
    if ($("neg-reason").value.trim()) body.reason = $("neg-reason").value;
    if ($("neg-category").value.trim()) body.category = $("neg-category").value;
    const result = await api("POST", "/v1/cache/negative", body);
    if (result.status === 200) {
      $("negative-form").reset();
      $("negative-error").textContent = "";
    } else {
      $("negative-error").textContent = errorText(result);
    }
    await poll();
  }

  function setRange(next) {
    range = next;
    $("range-hour").classList.toggle("on", next === "hour");
    $("range-day").classList.toggle("on", next === "day");
    if (last) render(last);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY_ITEM, $("key").value);
      $("key").value = "";
      poll();
    });
    $("logout").addEventListener("click", () => { sessionStorage.removeItem(KEY_ITEM); poll(); });
    $("negative").addEventListener("click", negativeAction);
    $("negative-form").addEventListener("submit", negativeAdd);
    $("range-hour").addEventListener("click", () => setRange("hour"));
    $("range-day").addEventListener("click", () => setRange("day"));
    poll();
  });
})();
