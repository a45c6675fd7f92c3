// syncplane console: live session progress (SSE), forms posted in place, and a periodic
// refresh of the sections that move on their own. No dependencies.
"use strict";

(function () {
  const csrfMeta = document.querySelector('meta[name="csrf"]');
  const flash = document.getElementById("flash");
  if (!flash) return; // the login and error pages have nothing live

  function say(ok, message) {
    flash.textContent = message;
    flash.dataset.ok = String(ok);
  }

  async function refresh(name) {
    const section = document.querySelector(`section[data-section="${name}"]`);
    if (!section) return;
    try {
      const response = await fetch(`/admin/sections/${name}`, { credentials: "same-origin" });
      if (response.ok) section.querySelector(".body").innerHTML = await response.text();
    } catch (err) {
      // A missed refresh is retried on the next tick.
    }
  }

  // -- actions: post in place, show the outcome ------------------------------------------
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-action")) return;
    event.preventDefault();
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    say(true, "Working…");
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      const answer = await response.json();
      say(answer.ok, answer.message);
      if (answer.ok) ["dead_letters", "sessions", "failures"].forEach(refresh);
    } catch (err) {
      say(false, "The gateway did not answer: " + err);
    } finally {
      if (button) button.disabled = false;
    }
  });

  // -- live progress ----------------------------------------------------------------------
  const live = document.getElementById("live");
  const fields = ["state", "pages", "fetched", "stored", "failed", "updated"];

  function cell(row, name) {
    return row.querySelector(`[data-field="${name}"]`);
  }

  function rowFor(event) {
    const id = `session-${event.session_id}`;
    let row = document.getElementById(id);
    if (row) return row;
    const body = document.getElementById("sessions-body");
    if (!body) return null;
    const empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    row = document.createElement("tr");
    row.id = id;
    const values = [event.session_id.slice(0, 8), event.user_id, event.provider, event.kind || ""];
    for (const value of values) {
      const td = document.createElement("td");
      td.textContent = value;
      row.appendChild(td);
    }
    for (const name of fields) {
      const td = document.createElement("td");
      td.dataset.field = name;
      row.appendChild(td);
    }
    body.prepend(row);
    return row;
  }

  function show(kind, event) {
    const row = rowFor(event);
    if (!row) return;
    const state = kind === "progress" ? event.phase : kind;
    row.dataset.state = kind === "progress" ? "running" : kind;
    cell(row, "state").textContent = state;
    for (const name of ["fetched", "stored", "failed"]) {
      if (event[name] !== undefined) cell(row, name).textContent = event[name];
    }
    cell(row, "updated").textContent = "just now";
    row.classList.remove("flash-row");
    void row.offsetWidth; // restart the highlight
    row.classList.add("flash-row");
    if (kind === "failed") refresh("failures");
  }

  if (window.EventSource) {
    const source = new EventSource("/admin/sync/events");
    source.onopen = () => {
      live.dataset.state = "open";
      live.textContent = "live";
    };
    source.onerror = () => {
      live.dataset.state = "closed";
      live.textContent = "live: reconnecting";
    };
    for (const kind of ["progress", "completed", "failed"]) {
      source.addEventListener(kind, (message) => show(kind, JSON.parse(message.data)));
    }
  }

  // Budgets and webhook counts move without events: read them again every few seconds.
  setInterval(() => ["budgets", "webhooks"].forEach(refresh), 5000);
  if (csrfMeta === null) return;
})();
