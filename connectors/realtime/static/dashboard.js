// Backbone dashboard: one websocket (GET /ws), resumed from the last positions after any drop.
"use strict";
(() => {
  const CHANNELS = ["research:*", "integration:*", "alerts", "dead-letters"];
  const WINDOW_MS = 5 * 60 * 1000;  // service figures are over the last five minutes
  const $ = (sel) => document.querySelector(sel);
  const stats = { received: 0, duplicates: 0, resyncs: 0, connects: 0, seen: new Set() };
  const positions = JSON.parse(sessionStorage.getItem("backbone.positions") || "{}");
  const state = { research: {}, services: {}, alerts: {}, dead: {}, chart: [[], [], []] };
  let ws = null, backoff = 500, pingTimer = null, lastPong = Date.now();

  const token = (() => {
    const m = location.hash.match(/token=([^&]+)/);
    if (m) { sessionStorage.setItem("backbone.token", m[1]); history.replaceState(null, "", location.pathname); }
    return sessionStorage.getItem("backbone.token");
  })();

  function setStatus(s, text) { const el = $("#status"); el.dataset.state = s; el.textContent = text || s; }
  function send(frame) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame)); }
  function savePositions() { sessionStorage.setItem("backbone.positions", JSON.stringify(positions)); }
  function remember(channel, list) {
    const map = positions[channel] = positions[channel] || {};
    for (const p of list) map[p.topic + "/" + p.partition] = p;
  }

  function connect() {
    stats.connects += 1;
    ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    ws.onopen = () => { backoff = 500; send({ op: "auth", token }); };
    ws.onmessage = (m) => handle(JSON.parse(m.data));
    ws.onclose = (e) => {
      clearInterval(pingTimer);
      if (e.code === 4001 || e.code === 4002) { setStatus("unauthorized", `token refused (${e.code})`); $("#login").hidden = false; return; }
      setStatus("reconnecting", `reconnecting (${e.code})`);
      setTimeout(connect, backoff); backoff = Math.min(backoff * 2, 5000);
    };
  }

  function handle(f) {
    if (f.type === "authenticated") {
      for (const channel of CHANNELS) {
        const known = positions[channel];
        send(known ? { op: "subscribe", channel, since: Object.values(known), id: channel }
                   : { op: "subscribe", channel, id: channel });
      }
      lastPong = Date.now();
      pingTimer = setInterval(() => {
        if (Date.now() - lastPong > 30000) { ws.close(); return; }  // a dead connection: reconnect
        send({ op: "ping" });
      }, 10000);
    } else if (f.type === "subscribed" || f.type === "positions") {
      remember(f.channel, f.positions); savePositions();
      if (f.type === "subscribed") { $("#resync").hidden = true; setStatus("live"); }
    } else if (f.type === "publication") {
      remember(f.channel, [f.position]);
      stats.received += 1;
      if (stats.seen.has(f.event_id)) { stats.duplicates += 1; } else { stats.seen.add(f.event_id); apply(f); }
      savePositions();
    } else if (f.type === "resync_required") {
      // The log no longer holds our position: start this channel afresh, visibly.
      stats.resyncs += 1;
      delete positions[f.channel]; savePositions();
      const el = $("#resync"); el.hidden = false; el.textContent = `resyncing ${f.channel} (${f.reason})`;
      setStatus("resyncing");
      send({ op: "subscribe", channel: f.channel, id: f.channel });
    } else if (f.type === "pong") {
      lastPong = Date.now();
    } else if (f.type === "error") {
      console.warn("backbone:", f.code, f.message);
    }
  }

  function service(name) {
    return state.services[name] = state.services[name] || { calls: [], circuit: "closed", cost: 0, window: null, health: null };
  }

  function apply(f) {
    const e = f.payload, t = f.event_type;
    if (t.startsWith("research.")) {
      const r = state.research[e.research_id] = state.research[e.research_id] || { percent: 0, steps: 0, message: "" };
      if (t === "research.progress_reported") { r.percent = e.percent; r.steps = e.steps_completed; r.total = e.steps_total; r.message = e.message; }
      else if (t === "research.started") { r.message = e.question; }
      else if (t === "research.completed") { r.percent = 100; r.message = e.outcome; }
      else if (t === "research.step_completed") { r.steps = Math.max(r.steps, (r.steps || 0) + 1); }
    } else if (t === "call.succeeded" || t === "call.failed") {
      const s = service(e.service);
      s.calls.push({ at: Date.now(), ok: t === "call.succeeded", latency: e.latency_ms, cost: e.cost_usd || 0 });
      s.cost += e.cost_usd || 0;
    } else if (t === "integration.circuit_state_changed") { service(e.service).circuit = e.current; }
    else if (t === "integration.health_checked") { service(e.service).health = e.status; }
    else if (t === "monitoring.metrics_window") { service(e.service).window = e; }
    else if (t === "monitoring.alert_raised") { state.alerts[e.alert_id] = e; }
    else if (t === "monitoring.alert_resolved") { delete state.alerts[e.alert_id]; }
    else if (t === "call.dead_lettered" && f.channel === "dead-letters") { bump("service " + e.service, `backbone dlq redrive --service ${e.service}`); }
    else if (t === "webhook.delivery_dead_lettered" && f.channel === "dead-letters") { bump("webhook " + e.endpoint_id, `backbone webhooks recover --endpoint ${e.endpoint_id} --since 1d`); }
    render();
  }

  function bump(where, command) { const d = state.dead[where] = state.dead[where] || { count: 0, command }; d.count += 1; }

  function quantile(sorted, q) { return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null; }
  const ms = (v) => v == null ? "–" : `${v.toFixed(0)} ms`;
  const pct = (v) => v == null ? "–" : `${(100 * v).toFixed(1)} %`;
  const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  function rows(sel, html) { $(sel + " tbody").innerHTML = html || `<tr><td class="empty" colspan="8">nothing yet</td></tr>`; }

  function figures(s) {
    const now = Date.now();
    s.calls = s.calls.filter((c) => now - c.at < WINDOW_MS);
    const lat = s.calls.map((c) => c.latency).filter((v) => v != null).sort((a, b) => a - b);
    const failed = s.calls.filter((c) => !c.ok).length;
    const span = s.calls.length ? Math.max(1, (now - s.calls[0].at) / 1000) : 1;
    const w = s.window;  // a metrics window from the projections wins when there is one
    return {
      p50: w && w.latency_p50_ms != null ? w.latency_p50_ms : quantile(lat, 0.5),
      p95: w && w.latency_p95_ms != null ? w.latency_p95_ms : quantile(lat, 0.95),
      errorRate: w ? w.error_rate : (s.calls.length ? failed / s.calls.length : null),
      throughput: w ? w.throughput_per_second : s.calls.length / span,
      availability: s.calls.length ? 1 - failed / s.calls.length : (s.health ? (s.health === "healthy" ? 1 : 0) : null),
    };
  }

  function render() {
    rows("#research", Object.entries(state.research).map(([id, r]) =>
      `<tr data-run="${esc(id)}"><td>${esc(id)}</td><td><progress max="100" value="${r.percent}"></progress> <span class="percent">${r.percent.toFixed(0)} %</span></td>` +
      `<td class="num">${r.steps}${r.total ? " / " + r.total : ""}</td><td>${esc(r.message)}</td></tr>`).join(""));
    rows("#services", Object.entries(state.services).map(([name, s]) => {
      const f = figures(s);
      return `<tr data-service="${esc(name)}"><td>${esc(name)}</td><td class="num">${ms(f.p50)}</td><td class="num">${ms(f.p95)}</td>` +
        `<td class="num">${pct(f.errorRate)}</td><td class="num">${f.throughput.toFixed(2)}/s</td><td class="num">${pct(f.availability)}</td>` +
        `<td class="circuit-${esc(s.circuit)}">${esc(s.circuit)}</td><td class="num">$${s.cost.toFixed(4)}</td></tr>`;
    }).join(""));
    rows("#alerts", Object.values(state.alerts).map((a) =>
      `<tr data-alert="${esc(a.alert_id)}"><td class="${esc(a.severity)}">${esc(a.severity)}</td><td>${esc(a.rule)}</td><td>${esc(a.service)}</td><td>${esc(a.summary)}</td></tr>`).join(""));
    rows("#dead-letters", Object.entries(state.dead).map(([where, d]) =>
      `<tr data-dead="${esc(where)}"><td>${esc(where)}</td><td class="num">${d.count}</td><td><code>${esc(d.command)}</code></td></tr>`).join(""));
  }

  let plot = null;
  function tick() {  // one point per second: calls/s and p95 latency across services
    const now = Date.now(), all = Object.values(state.services).flatMap((s) => s.calls);
    const recent = all.filter((c) => now - c.at < 1000);
    const lat = all.filter((c) => now - c.at < 10000 && c.latency != null).map((c) => c.latency).sort((a, b) => a - b);
    const [xs, ys, ps] = state.chart;
    xs.push(now / 1000); ys.push(recent.length); ps.push(quantile(lat, 0.95));
    if (xs.length > 300) { xs.shift(); ys.shift(); ps.shift(); }
    if (!plot && window.uPlot) {
      plot = new uPlot({ width: Math.min(900, window.innerWidth - 80), height: 160,
        series: [{}, { label: "calls/s", stroke: "#2e6fd8" }, { label: "p95 ms", stroke: "#c98a00", scale: "ms" }],
        axes: [{}, {}, { scale: "ms", side: 1 }] }, state.chart, $("#chart"));
    } else if (plot) { plot.setData(state.chart); }
    render();
  }

  $("#login-form").addEventListener("submit", (ev) => {
    ev.preventDefault(); sessionStorage.setItem("backbone.token", $("#token").value.trim()); location.reload();
  });
  window.backboneDashboard = { stats, state, positions };
  render();
  setInterval(tick, 1000);
  if (token) { connect(); } else { setStatus("unauthorized", "no token"); $("#login").hidden = false; }
})();
