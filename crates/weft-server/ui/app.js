// The weft web UI: a few views over the /v1 API, routed by the URL hash. No framework and no
// build step. The API key lives in sessionStorage (this tab only) and goes out as a bearer
// token; the live run view follows the run's event stream through a single-use ticket.
(function () {
  "use strict";
  var esc = function (s) {
    return String(s == null ? "" : s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  };
  var $ = function (sel) { return document.querySelector(sel); };
  var view = $("#view");
  var stopCurrent = function () {};

  function key() { return sessionStorage.getItem("weft.key"); }

  function api(method, path, body) {
    var headers = { "Authorization": "Bearer " + key() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (res) {
        return res.text().then(function (text) {
          var data = text ? JSON.parse(text) : null;
          if (res.status === 401) { signOut(); }
          if (!res.ok) { var e = new Error((data && data.detail) || res.statusText); e.problem = data; throw e; }
          return data;
        });
      });
  }

  function signOut() {
    sessionStorage.removeItem("weft.key");
    tenant = null;
    $("#tenant").textContent = "";
    route();
  }

  // Whose runs these are: the signed-in key's tenant, named in the header and the runs list
  // (the CLI's runs are tenant `default`'s unless `weft run --tenant NAME` said otherwise).
  var tenant = null;
  function whoAmI() {
    if (tenant) return Promise.resolve(tenant);
    return api("GET", "/v1/tenant").then(function (t) {
      tenant = t.name;
      $("#tenant").textContent = "tenant " + t.name;
      return tenant;
    });
  }

  function fmtDuration(ms) {
    if (ms == null) return "";
    if (ms < 1000) return ms + " ms";
    var s = ms / 1000;
    return s < 60 ? s.toFixed(1) + " s" : Math.floor(s / 60) + " m " + Math.round(s % 60) + " s";
  }
  function fmtTime(t) { return t ? new Date(t).toLocaleString() : ""; }
  function badge(status) { return '<span class="status ' + esc(status) + '">' + esc(status) + "</span>"; }

  // The ask box: a sentence to POST /v1/ask. A confident match starts the run (or, on a dry
  // run, shows the template with a form of the inputs it read, to correct before starting);
  // an unsure one shows the question and the candidate templates, and starts nothing (with
  // the form too when it knows the template but an input is missing or ambiguous).
  function askBox() {
    return '<form id="ask-form" class="ask"><input id="ask-text" name="text" autocomplete="off" ' +
      'placeholder="Say what you want, e.g. Find all HVAC businesses in Colorado" aria-label="What you want">' +
      ' <button class="primary" type="submit">Ask</button> <button id="ask-dry" type="button">Dry run</button></form>' +
      '<div id="ask-answer" role="status"></div>';
  }

  // The template's inputs as a form, prefilled with what the sentence gave; submitting it
  // starts the run with the inputs as corrected.
  function askInputs(a, slot) {
    api("GET", "/v1/templates/" + encodeURIComponent(a.template)).then(function (t) {
      var v = t.versions.filter(function (x) { return x.version === a.version; })[0] || t.versions[t.versions.length - 1];
      var inputs = v.inputs.map(function (i) {
        var c = Object.assign({}, i);
        if (a.inputs && a.inputs[i.name] != null) c["default"] = a.inputs[i.name];
        return c;
      });
      slot.innerHTML = '<form id="ask-inputs" class="run-form">' + inputs.map(inputField).join("") +
        '<p><button id="ask-start" class="primary" type="submit">Start this run</button></p>' +
        '<p id="ask-form-error" class="error" role="alert"></p></form>';
      $("#ask-inputs").onsubmit = function (ev) {
        ev.preventDefault();
        var values;
        try { values = readInputs(ev.target, inputs); } catch (e) { showFieldErrors(ev.target, e, $("#ask-form-error")); return; }
        api("POST", "/v1/runs", { template: a.template, version: v.version, inputs: values })
          .then(function (run) { location.hash = "#/runs/" + run.id; })
          .catch(function (e) { showFieldErrors(ev.target, e, $("#ask-form-error")); });
      };
    }).catch(function (e) { slot.innerHTML = '<p class="error">' + esc(e.message) + "</p>"; });
  }

  function wireAsk() {
    var form = $("#ask-form"), out = $("#ask-answer");
    function send(dryRun) {
      var text = $("#ask-text").value.trim();
      if (!text) return;
      out.innerHTML = '<p class="meta">Matching…</p>';
      api("POST", "/v1/ask", { text: text, dry_run: dryRun }).then(function (a) {
        var candidates = function (list) {
          return '<ul class="candidates">' + list.map(function (c) {
            return '<li><a href="#/templates/' + encodeURIComponent(c.template) + '">' + esc(c.template) + "</a> " +
              '<span class="meta">' + esc(Math.round(c.confidence * 100)) + "%" + (c.description ? " — " + esc(c.description) : "") + "</span></li>";
          }).join("") + "</ul>";
        };
        if (a.status === "clarify") {
          out.innerHTML = '<div class="card clarify"><p class="question">' + esc(a.question) + "</p>" +
            (a.template && a.missing.length ? '<div id="ask-inputs-slot"></div>' : "") +
            (a.candidates.length ? "<p>Candidates:</p>" + candidates(a.candidates) : "") + "</div>";
          if (a.template && a.missing.length) askInputs(a, $("#ask-inputs-slot"));
          return;
        }
        if (a.run_id) { location.hash = "#/runs/" + a.run_id; return; }
        out.innerHTML = '<div class="card matched"><p><b>' + esc(a.template) + "@" + esc(a.version) + "</b> " +
          '<span class="meta">' + esc(Math.round(a.confidence * 100)) + "% · " + esc(a.matcher) +
          " · correct the inputs if the sentence was read wrong</span></p>" +
          '<div id="ask-inputs-slot"></div>' +
          (a.alternatives.length ? "<p>Also possible:</p>" + candidates(a.alternatives) : "") + "</div>";
        askInputs(a, $("#ask-inputs-slot"));
      }).catch(function (e) { out.innerHTML = '<p class="error">' + esc(e.message) + "</p>"; });
    }
    form.onsubmit = function (ev) { ev.preventDefault(); send(false); };
    $("#ask-dry").onclick = function () { send(true); };
  }

  // Schedules: each with its next fire time; pause, resume, delete; and a form to add one.
  function showSchedules() {
    view.innerHTML = '<h1>Schedules</h1><table id="schedules"><thead><tr><th>Name</th><th>Template</th><th>Cron</th>' +
      '<th>State</th><th>Next</th><th>Last fired</th><th></th></tr></thead><tbody></tbody></table>' +
      '<div class="card"><h2>Add a schedule</h2><form id="schedule-form" class="run-form">' +
      '<label for="sch-template">Template</label><select id="sch-template" name="template" required></select>' +
      '<label for="sch-cron">Cron <span class="hint">five fields, e.g. 0 6 * * MON (06:00 every Monday)</span></label>' +
      '<input id="sch-cron" name="cron" required placeholder="0 6 * * MON">' +
      '<label for="sch-tz">Time zone <span class="hint">IANA name; UTC when empty</span></label>' +
      '<input id="sch-tz" name="timezone" placeholder="UTC">' +
      '<label for="sch-name">Name <span class="hint">the template\'s name when empty</span></label><input id="sch-name" name="name">' +
      '<label for="sch-inputs">Inputs <span class="hint">JSON object</span></label>' +
      '<textarea id="sch-inputs" name="inputs" rows="3" cols="60">{}</textarea>' +
      '<p><button class="primary" type="submit">Add</button></p><p id="schedule-error" class="error" role="alert"></p></form></div>';
    var alive = true;
    function load() {
      api("GET", "/v1/schedules").then(function (list) {
        if (!alive) return;
        $("#schedules tbody").innerHTML = list.schedules.map(function (s) {
          return '<tr data-schedule="' + esc(s.id) + '"><td>' + esc(s.name) + "</td><td>" + esc(s.template) + "@" + esc(s.version) +
            "</td><td><code>" + esc(s.cron) + "</code> " + esc(s.timezone) + "</td><td>" + badge(s.paused ? "paused" : "active") +
            '</td><td class="next">' + esc(fmtTime(s.next_fire_at)) + "</td><td>" + esc(fmtTime(s.last_fired_at)) +
            (s.last_error ? '<div class="error">' + esc(s.last_error) + "</div>" : "") + "</td><td>" +
            '<button type="button" class="' + (s.paused ? "resume" : "pause") + '">' + (s.paused ? "Resume" : "Pause") + "</button> " +
            '<button type="button" class="delete">Delete</button></td></tr>';
        }).join("") || '<tr><td colspan="7">No schedules yet.</td></tr>';
        $("#schedules tbody").querySelectorAll("button").forEach(function (b) {
          var id = b.closest("tr").dataset.schedule, path = "/v1/schedules/" + encodeURIComponent(id);
          b.onclick = function () {
            var done = b.classList.contains("delete") ? api("DELETE", path)
              : api("POST", path + "/" + (b.classList.contains("pause") ? "pause" : "resume"));
            done.then(load).catch(function (e) { $("#schedule-error").textContent = e.message; });
          };
        });
      }).catch(function () {});
    }
    api("GET", "/v1/templates").then(function (list) {
      $("#sch-template").innerHTML = list.templates.map(function (t) {
        return '<option value="' + esc(t.name) + '">' + esc(t.name) + "</option>";
      }).join("");
    });
    $("#schedule-form").onsubmit = function (ev) {
      ev.preventDefault();
      var f = ev.target, body = { template: f.elements.template.value, cron: f.elements.cron.value };
      if (f.elements.timezone.value) body.timezone = f.elements.timezone.value;
      if (f.elements.name.value) body.name = f.elements.name.value;
      try { body.inputs = JSON.parse(f.elements.inputs.value || "{}"); } catch (e) {
        $("#schedule-error").textContent = "Inputs are not JSON: " + e.message; return;
      }
      api("POST", "/v1/schedules", body).then(function () { $("#schedule-error").textContent = ""; load(); })
        .catch(function (e) {
          var p = e.problem;
          $("#schedule-error").textContent = p && p.errors && p.errors.length
            ? p.errors.map(function (x) { return x.field + ": " + x.message; }).join("\n") : e.message;
        });
    };
    load();
    var timer = setInterval(load, 5000);
    return function () { alive = false; clearInterval(timer); };
  }

  // A run's inputs in one short line, for the list.
  function inputsLine(inputs) {
    if (!inputs || typeof inputs !== "object") return "";
    return Object.keys(inputs).map(function (k) {
      var v = inputs[k];
      return k + "=" + (typeof v === "string" ? v : JSON.stringify(v));
    }).join(" ");
  }

  function runRow(r, child) {
    return '<tr data-run="' + esc(r.id) + '"' + (child ? ' class="child"' : "") + '><td>' +
      (r.child_count ? '<button type="button" class="expand" aria-expanded="false" title="Runs it started">▸ ' + esc(r.child_count) + "</button> " : "") +
      '<a href="#/runs/' + esc(r.id) + '">' + esc(r.id) + "</a>" +
      (child && r.parent && r.parent.action ? ' <span class="meta">action ' + esc(r.parent.action) + "</span>" : "") +
      (child && r.parent && r.parent.step ? ' <span class="meta">step ' + esc(r.parent.step) + "</span>" : "") + "</td><td>" +
      esc(r.template) + "@" + esc(r.version) + '</td><td class="inputs-cell" title="' + esc(inputsLine(r.inputs)) + '">' + esc(inputsLine(r.inputs)) +
      "</td><td>" + badge(r.status) + "</td><td>" + esc(fmtTime(r.created_at)) + "</td><td>" + esc(fmtDuration(r.duration_ms)) + "</td></tr>";
  }

  // Runs list: filters (status, template, dates, a search over ids and input values), runs
  // another run started grouped under it, and keyset pages. The first page refreshes every
  // two seconds while shown.
  function showRuns() {
    view.innerHTML = askBox() + '<h1>Runs <span id="runs-tenant" class="meta"></span></h1>' +
      '<form id="runs-filter" class="filters">' +
      '<input name="search" type="search" placeholder="Search ids and input values" aria-label="Search">' +
      '<label>Status <select name="status"><option value="">any</option>' +
      ["queued", "running", "waiting", "succeeded", "failed", "cancelled"].map(function (x) { return "<option>" + x + "</option>"; }).join("") +
      '</select></label><label>Template <select name="template"><option value="">any</option></select></label>' +
      '<label>From <input name="since" type="date"></label><label>To <input name="until" type="date"></label>' +
      '<label><input name="roots" type="checkbox" checked> group started runs under their parent</label></form>' +
      '<table id="runs"><thead><tr><th>Run</th><th>Template</th><th>Inputs</th>' +
      '<th>Status</th><th>Created</th><th>Duration</th></tr></thead><tbody></tbody></table>' +
      '<p class="pager"><button type="button" id="runs-newer" disabled>← Newer</button> <button type="button" id="runs-older" disabled>Older →</button></p>';
    var alive = true, cursors = [null], page = 0, next = null, open = {};
    var form = $("#runs-filter");
    function query() {
      var f = form.elements, q = ["limit=50"];
      if (f.search.value.trim()) q.push("search=" + encodeURIComponent(f.search.value.trim()));
      if (f.status.value) q.push("status=" + f.status.value);
      if (f.template.value) q.push("template=" + encodeURIComponent(f.template.value));
      if (f.since.value) q.push("since=" + f.since.value);
      if (f.until.value) {
        // The "To" day is included: the API's `until` is exclusive.
        var d = new Date(f.until.value + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() + 1);
        q.push("until=" + d.toISOString().slice(0, 10));
      }
      if (f.roots.checked) q.push("roots=true");
      if (cursors[page]) q.push("cursor=" + encodeURIComponent(cursors[page]));
      return q.join("&");
    }
    function expand(id, button) {
      var row = button.closest("tr");
      return api("GET", "/v1/runs?limit=200&parent=" + encodeURIComponent(id)).then(function (list) {
        var sib = row.nextElementSibling;
        while (sib && sib.classList.contains("child")) { var n = sib.nextElementSibling; sib.remove(); sib = n; }
        row.insertAdjacentHTML("afterend", list.runs.map(function (c) { return runRow(c, true); }).join(""));
        button.setAttribute("aria-expanded", "true");
        button.textContent = "▾ " + list.runs.length;
      });
    }
    function load() {
      return api("GET", "/v1/runs?" + query()).then(function (list) {
        if (!alive) return;
        next = list.next_cursor;
        $("#runs-older").disabled = !next;
        $("#runs-newer").disabled = page === 0;
        var filtered = form.elements.search.value || form.elements.status.value || form.elements.template.value || form.elements.since.value || form.elements.until.value;
        $("#runs tbody").innerHTML = list.runs.map(function (r) { return runRow(r, false); }).join("") ||
          (filtered ? '<tr><td colspan="6">No runs match these filters.</td></tr>'
            : '<tr><td colspan="6">No runs of tenant ' + esc(tenant || "") + ' yet. Start one from <a href="#/templates">Templates</a>' +
          (tenant === "default" ? ", or with <code>weft run</code>." : ', or with <code>weft run --tenant ' + esc(tenant || "") + "</code> (plain <code>weft run</code> starts runs of tenant <code>default</code>).") +
          "</td></tr>");
        $("#runs tbody").querySelectorAll("button.expand").forEach(function (b) {
          var id = b.closest("tr").dataset.run;
          b.onclick = function () {
            if (open[id]) {
              delete open[id];
              var sib = b.closest("tr").nextElementSibling;
              while (sib && sib.classList.contains("child")) { var n = sib.nextElementSibling; sib.remove(); sib = n; }
              b.setAttribute("aria-expanded", "false");
              b.textContent = "▸ " + b.closest("tr").dataset.count;
              return;
            }
            open[id] = true;
            expand(id, b).catch(function () {});
          };
          b.closest("tr").dataset.count = b.textContent.replace(/^\D+/, "");
          if (open[id]) expand(id, b).catch(function () {});
        });
      }).catch(function (e) { $("#runs tbody").innerHTML = '<tr><td colspan="6" class="error">' + esc(e.message) + "</td></tr>"; });
    }
    var typing = null;
    form.oninput = function () {
      clearTimeout(typing);
      typing = setTimeout(function () { cursors = [null]; page = 0; load(); }, 250);
    };
    form.onsubmit = function (ev) { ev.preventDefault(); };
    $("#runs-older").onclick = function () { if (!next) return; cursors[page + 1] = next; page += 1; load(); };
    $("#runs-newer").onclick = function () { if (page === 0) return; page -= 1; load(); };
    api("GET", "/v1/templates").then(function (list) {
      form.elements.template.insertAdjacentHTML("beforeend", list.templates.map(function (t) {
        return '<option value="' + esc(t.name) + '">' + esc(t.name) + "</option>";
      }).join(""));
    }).catch(function () {});
    // The tenant first, so that even the first "no runs" line names it.
    var named = whoAmI().then(function (name) { if (alive) $("#runs-tenant").textContent = "of tenant " + name; }).catch(function () {});
    wireAsk();
    named.then(load);
    var timer = setInterval(function () { if (page === 0) load(); }, 2000);
    return function () { alive = false; clearInterval(timer); };
  }

  // Each node links to its step's drill-down; a step whose approval was rejected is drawn as
  // rejected, not as failed.
  function renderGraph(el, steps, rejected, runId, selected) {
    rejected = rejected || {};
    var depth = {};
    steps.forEach(function (s) {
      depth[s.id] = s.needs.reduce(function (d, n) { return Math.max(d, (depth[n] || 0) + 1); }, 0);
    });
    var columns = [];
    steps.forEach(function (s) { (columns[depth[s.id]] = columns[depth[s.id]] || []).push(s); });
    el.innerHTML = '<svg></svg>' + columns.map(function (col) {
      return '<div class="column">' + col.map(function (s) {
        var items = s.items_total != null
          ? '<div class="meta items">' + s.items_done + "/" + s.items_total + " items" +
            (s.items_failed ? ", " + s.items_failed + " failed" : "") + '</div><div class="bar"><div style="width:' +
            (s.items_total ? Math.round(100 * s.items_done / s.items_total) : 0) + '%"></div></div>' : "";
        var shown = s.status === "failed" && rejected[s.id] ? "rejected" : s.status;
        return '<a class="node ' + esc(shown) + (s.id === selected ? " selected" : "") + '" href="#/runs/' + esc(runId) + "/steps/" + esc(encodeURIComponent(s.id)) +
          '" data-step="' + esc(s.id) + '" data-status="' + esc(shown) + '" title="Open step ' + esc(s.id) + '">' +
          '<div class="name">' + esc(s.id) + '</div><div class="meta">' + esc(s.tool || s.kind || "") + " · " + esc(shown) +
          (s.attempts > 1 ? " · " + s.attempts + " attempts" : "") +
          (s.duration_ms != null ? " · " + esc(fmtDuration(s.duration_ms)) : "") + "</div>" + items + "</a>";
      }).join("") + "</div>";
    }).join("");
    requestAnimationFrame(function () {
      var svg = el.querySelector("svg"), box = el.getBoundingClientRect();
      if (!svg) return;
      svg.setAttribute("width", el.scrollWidth); svg.setAttribute("height", el.scrollHeight);
      var paths = [];
      steps.forEach(function (s) {
        var to = el.querySelector('[data-step="' + CSS.escape(s.id) + '"]');
        s.needs.forEach(function (n) {
          var from = el.querySelector('[data-step="' + CSS.escape(n) + '"]');
          if (!from || !to) return;
          var a = from.getBoundingClientRect(), b = to.getBoundingClientRect();
          var x1 = a.right - box.left + el.scrollLeft, y1 = a.top + a.height / 2 - box.top;
          var x2 = b.left - box.left + el.scrollLeft, y2 = b.top + b.height / 2 - box.top;
          paths.push('<path d="M' + x1 + "," + y1 + " C" + (x1 + 24) + "," + y1 + " " + (x2 - 24) + "," + y2 + " " + x2 + "," + y2 +
            '" fill="none" stroke="#8c959f" stroke-width="1.5"/>');
        });
      });
      svg.innerHTML = paths.join("");
    });
  }

  // An output: text comes rendered from the server (markdown, sanitized there by ammonia) as
  // `html`; anything else is shown as JSON.
  function renderOutput(output, html) {
    if (output == null) return "";
    if (typeof output === "string" && html != null) return '<div class="output markdown">' + html + "</div>";
    return '<pre class="output json">' + esc(JSON.stringify(output, null, 2)) + "</pre>";
  }

  function fmtCost(usd) { return usd ? "$" + Number(usd).toFixed(4) : ""; }

  // One task in full: status, timing, input, output, error, stderr tail and every attempt.
  function renderTask(t) {
    var facts = [badge(t.status), esc(t.tool)];
    facts.push(t.cache_hit ? "from the cache" : esc(t.attempts.length) + " of " + esc(t.max_attempts) + " attempts");
    if (t.lease_losses) facts.push(esc(t.lease_losses) + " lost workers");
    if (t.duration_ms != null) facts.push(esc(fmtDuration(t.duration_ms)));
    if (t.llm_tokens) facts.push(esc(t.llm_tokens) + " tokens (" + esc(t.llm_prompt_tokens) + " in, " + esc(t.llm_completion_tokens) + " out)");
    if (t.cost_usd) facts.push(esc(fmtCost(t.cost_usd)));
    return '<div class="task" data-item="' + esc(t.item == null ? "" : t.item) + '">' +
      '<p class="facts">' + facts.join(" · ") + "</p>" +
      (t.started_at ? '<p class="meta">started ' + esc(fmtTime(t.started_at)) + (t.finished_at ? " · ended " + esc(fmtTime(t.finished_at)) : "") + "</p>" : "") +
      (t.error ? '<h4>Error</h4><pre class="error task-error">' + esc(t.error) + "</pre>" : "") +
      (t.stderr_tail ? '<h4>stderr (end)</h4><pre class="stderr">' + esc(t.stderr_tail) + "</pre>" : "") +
      (t.attempts.length ? '<h4>Attempts</h4><table class="attempts"><thead><tr><th>#</th><th>Result</th><th>Reason</th><th>Started</th><th>Took</th><th>Error</th></tr></thead><tbody>' +
        t.attempts.map(function (a) {
          return '<tr data-attempt="' + esc(a.attempt) + '"><td>' + esc(a.attempt) + "</td><td>" + badge(a.status) + "</td><td>" +
            esc(a.reason ? a.reason.replace("_", " ") : "") + "</td><td>" + esc(fmtTime(a.started_at)) + "</td><td>" +
            esc(fmtDuration(a.duration_ms)) + '</td><td class="error">' + esc(a.error || "") + "</td></tr>";
        }).join("") + "</tbody></table>" : "") +
      "<h4>Input</h4><pre class=\"input\">" + esc(JSON.stringify(t.input, null, 2)) + "</pre>" +
      (t.output != null ? "<h4>Output</h4>" + renderOutput(t.output, t.output_html) : "") + "</div>";
  }

  // The drill-down of one step (and of one item of a fan-out), below the graph.
  function showStep(runId, stepId, item) {
    var el = $("#step-panel"), base = "/v1/runs/" + encodeURIComponent(runId) + "/steps/" + encodeURIComponent(stepId);
    return api("GET", base).then(function (s) {
      var facts = [badge(s.status), esc(s.kind === "tool" ? (s.tool || "") : s.kind)];
      if (s.duration_ms != null) facts.push(esc(fmtDuration(s.duration_ms)));
      if (s.items_total != null) facts.push(esc(s.items_done) + "/" + esc(s.items_total) + " items" + (s.items_failed ? ", " + esc(s.items_failed) + " failed" : ""));
      if (s.cache_hits) facts.push(esc(s.cache_hits) + " from the cache");
      if (s.llm_tokens) facts.push(esc(s.llm_tokens) + " tokens");
      if (s.cost_usd) facts.push(esc(fmtCost(s.cost_usd)));
      var close = '<a class="close" href="#/runs/' + esc(runId) + '" title="Close">×</a>';
      // A plain step is its one task: the task's facts say it all.
      var html = '<div class="card step-detail" data-step="' + esc(s.id) + '">' + close + "<h2>Step " + esc(s.id) + "</h2>" +
        (s.task ? renderTask(s.task) : '<p class="facts">' + facts.join(" · ") + "</p>" +
          (s.started_at ? '<p class="meta">started ' + esc(fmtTime(s.started_at)) + (s.finished_at ? " · ended " + esc(fmtTime(s.finished_at)) : "") + "</p>" : "") +
          (s.error ? '<pre class="error">' + esc(s.error) + "</pre>" : ""));
      if (s.items.length) {
        html += '<h3>Items</h3><table class="items"><thead><tr><th>#</th><th>Item</th><th>Status</th><th>Attempts</th><th>Took</th><th>Error</th></tr></thead><tbody>' +
          s.items.map(function (i) {
            return '<tr data-item="' + esc(i.index) + '" class="' + (String(i.index) === String(item) ? "selected" : "") + '"><td><a href="#/runs/' + esc(runId) + "/steps/" +
              esc(encodeURIComponent(s.id)) + "/items/" + esc(i.index) + '">' + esc(i.index) + "</a></td><td><code>" + esc(i.item) + "</code></td><td>" +
              badge(i.status) + (i.cache_hit ? ' <span class="meta">cached</span>' : "") + "</td><td>" + esc(i.attempts) + "</td><td>" + esc(fmtDuration(i.duration_ms)) +
              '</td><td class="error">' + esc(i.error || "") + "</td></tr>";
          }).join("") + "</tbody></table>" + '<div id="item-detail"></div>';
      } else if (s.output != null && !s.task) {
        html += "<h4>Output</h4>" + renderOutput(s.output, s.output_html);
      }
      el.innerHTML = html + "</div>";
      if (item != null && s.items.length) {
        return api("GET", base + "/items/" + encodeURIComponent(item)).then(function (t) {
          $("#item-detail").innerHTML = '<div class="card item-detail"><h3>Item ' + esc(t.item) + "</h3>" + renderTask(t) + "</div>";
        });
      }
    }).catch(function (e) { el.innerHTML = '<p class="error">' + esc(e.message) + "</p>"; });
  }

  // The run's event history, filtered by kind and step, oldest first.
  function timelineCard(steps) {
    return '<div class="card timeline"><h2>History</h2><form id="timeline-filter" class="filters">' +
      '<label>Kind <select name="kind"><option value="">all</option><option value="run">run</option><option value="step">step</option>' +
      '<option value="task">task</option><option value="task.failed,task.retrying">failures and retries</option><option value="approval">approval</option></select></label> ' +
      '<label>Step <select name="step"><option value="">all</option>' + steps.map(function (s) {
        return '<option value="' + esc(s.id) + '">' + esc(s.id) + "</option>";
      }).join("") + "</select></label></form>" +
      '<table id="timeline"><thead><tr><th>#</th><th>Time</th><th>Event</th><th>Step</th><th>Details</th></tr></thead><tbody></tbody></table>' +
      '<p><button type="button" id="timeline-more" hidden>More events…</button></p></div>';
  }

  function eventDetails(e) {
    var d = e.data || {}, parts = [];
    ["error", "reason", "prompt", "comment", "by", "template"].forEach(function (k) {
      if (d[k] != null && d[k] !== "") parts.push(k + ": " + (typeof d[k] === "string" ? d[k] : JSON.stringify(d[k])));
    });
    if (d.approved != null) parts.unshift(d.approved ? "approved" : "rejected");
    if (d.duration_ms != null) parts.push("took " + fmtDuration(d.duration_ms));
    if (d.done != null && d.total != null) parts.push(d.done + "/" + d.total);
    if (d.next_attempt != null) parts.push("next attempt " + d.next_attempt);
    return parts.join(" · ");
  }

  function loadTimeline(runId, more) {
    var form = $("#timeline-filter");
    if (!form) return Promise.resolve();
    var q = [], kind = form.elements.kind.value, step = form.elements.step.value;
    if (kind) q.push("kind=" + encodeURIComponent(kind));
    if (step) q.push("step=" + encodeURIComponent(step));
    var body = $("#timeline tbody");
    var after = more ? Number(body.dataset.next || 0) : 0;
    if (after) q.push("after=" + after);
    q.push("limit=500");
    return api("GET", "/v1/runs/" + encodeURIComponent(runId) + "/history?" + q.join("&")).then(function (page) {
      var rows = page.events.map(function (e) {
        var kindClass = e.kind.replace(/\./g, "-");
        return '<tr class="event ' + esc(kindClass) + '" data-kind="' + esc(e.kind) + '"><td>' + esc(e.seq) + "</td><td>" + esc(fmtTime(e.ts)) + "</td><td><code>" +
          esc(e.kind) + "</code></td><td>" + (e.step_id ? esc(e.step_id) + (e.item != null ? " [" + esc(e.item) + "]" : "") + (e.attempt ? " #" + esc(e.attempt) : "") : "") +
          "</td><td>" + esc(eventDetails(e)) + "</td></tr>";
      }).join("");
      if (more) body.insertAdjacentHTML("beforeend", rows); else body.innerHTML = rows || '<tr><td colspan="5">No events match.</td></tr>';
      body.dataset.next = page.next_after || "";
      $("#timeline-more").hidden = !page.next_after;
    }).catch(function () {});
  }

  // The steps whose approval someone rejected: told apart from steps that failed.
  function rejectedSteps(run) {
    var out = {};
    (run.decisions || []).forEach(function (d) { if (!d.approved) out[d.step] = true; });
    return out;
  }

  function renderRun(run, selected) {
    var failed = run.steps.filter(function (s) { return s.error; });
    var ended = run.status === "succeeded" || run.status === "failed" || run.status === "cancelled";
    $("#run-head").innerHTML = "<h1>" + esc(run.template) + "@" + esc(run.version) + " " +
      '<span id="run-status">' + badge(run.status) + "</span></h1>" +
      '<div class="meta">' + esc(run.id) + " · started " + esc(fmtTime(run.started_at)) +
      (run.duration_ms != null ? " · " + esc(fmtDuration(run.duration_ms)) : "") +
      (run.usage && run.usage.llm_tokens ? " · " + esc(run.usage.llm_tokens) + " tokens" : "") +
      (run.usage && run.usage.cost_usd ? " · " + esc(fmtCost(run.usage.cost_usd)) : "") + "</div>" +
      (run.parent ? '<div class="meta">started by <a href="#/runs/' + esc(run.parent.run_id) + '">' + esc(run.parent.run_id) + "</a>" +
        (run.parent.step ? " · step " + esc(run.parent.step) + (run.parent.item != null ? " item " + esc(run.parent.item) : "") : "") +
        (run.parent.action ? " · action " + esc(run.parent.action) : "") + "</div>" : "") +
      '<div class="run-buttons">' +
      (run.status === "running" || run.status === "waiting" || run.status === "queued" ? '<button id="cancel" type="button">Cancel</button> ' : "") +
      (run.status === "failed" || run.status === "cancelled" ? '<button id="resume" type="button" class="primary" title="Run again only what did not succeed, in this run">Resume</button> ' : "") +
      (ended ? '<button id="run-again" type="button" title="Start a new run of this template with the same inputs">Run again with the same inputs</button>' : "") +
      '</div><p class="error" id="run-action-error" role="alert"></p>';
    var cancel = $("#cancel"), resume = $("#resume"), again = $("#run-again");
    var fail = function (e) { $("#run-action-error").textContent = e.message; };
    if (cancel) cancel.onclick = function () { api("POST", run.links.cancel).then(function (r) { renderRun(r, selected); }).catch(fail); };
    if (resume) resume.onclick = function () { api("POST", run.links.resume).then(function () { route(); }).catch(fail); };
    if (again) again.onclick = function () {
      api("POST", "/v1/runs", { template: run.template, version: run.version, inputs: run.inputs })
        .then(function (r) { location.hash = "#/runs/" + r.id; }).catch(fail);
    };
    renderGraph($("#graph"), run.steps, rejectedSteps(run), run.id, selected);
    $("#run-error").innerHTML = run.error
      ? '<div class="card"><h2>Error</h2><pre class="error run-error">' + esc(run.error) + "</pre>" +
        failed.map(function (s) {
          return '<h3>Step <a href="#/runs/' + esc(run.id) + "/steps/" + esc(encodeURIComponent(s.id)) + '">' + esc(s.id) + '</a></h3><pre class="error step-error">' + esc(s.error) + "</pre>";
        }).join("") + "</div>" : "";
    $("#run-output").innerHTML = run.output != null ? '<div class="card"><h2>Output</h2>' + renderOutput(run.output, run.output_html) + "</div>" : "";
    $("#run-inputs").innerHTML = '<div class="card"><h2>Inputs</h2><pre>' + esc(JSON.stringify(run.inputs, null, 2)) + "</pre></div>";
    renderFollowUps(run);
  }

  // Approvals waiting for a decision and those decided, the runs this run started, and its
  // follow-up actions.
  function renderFollowUps(run) {
    var approvals = run.approvals || [], decisions = run.decisions || [], children = run.children || [], actions = run.actions || [];
    var el = $("#run-follow");
    el.innerHTML =
      (approvals.length ? '<div class="card approvals"><h2>Waiting for approval</h2>' + approvals.map(function (a, i) {
        return '<div class="approval" data-step="' + esc(a.step) + '"' + (a.item != null ? ' data-item="' + esc(a.item) + '"' : "") + ">" +
          "<p><b>" + esc(a.step) + (a.item != null ? " [" + esc(a.item) + "]" : "") + "</b> " + esc(a.prompt || "Approve?") +
          (a.timeout ? ' <span class="meta">(times out after ' + esc(a.timeout) + ")</span>" : "") + "</p>" +
          '<input class="comment" placeholder="comment (optional)" aria-label="comment"> ' +
          '<button type="button" class="approve" data-i="' + i + '">Approve</button> ' +
          '<button type="button" class="reject" data-i="' + i + '">Reject</button></div>';
      }).join("") + '<p class="error" id="approval-error"></p></div>' : "") +
      (decisions.length ? '<div class="card decisions"><h2>Decisions</h2><ul>' + decisions.map(function (d) {
        return '<li class="decision ' + (d.approved ? "approved" : "rejected") + '" data-step="' + esc(d.step) + '"' +
          (d.item != null ? ' data-item="' + esc(d.item) + '"' : "") + ">" +
          '<span class="verdict">' + (d.approved ? "✓ Approved" : "⊘ Rejected") + "</span> <b>" + esc(d.step) +
          (d.item != null ? " [" + esc(d.item) + "]" : "") + "</b> by " + esc(d.by) +
          (d.comment ? ': <q class="comment">' + esc(d.comment) + "</q>" : "") +
          (d.at ? ' <span class="meta">' + esc(fmtTime(d.at)) + "</span>" : "") + "</li>";
      }).join("") + "</ul></div>" : "") +
      (children.length ? '<div class="card"><h2>Runs started</h2><ul class="children">' + children.map(function (c) {
        return '<li><a href="#/runs/' + esc(c.id) + '">' + esc(c.id) + "</a> " + esc(c.template) + "@" + esc(c.version) + " " + badge(c.status) +
          (c.step ? " · step " + esc(c.step) + (c.item != null ? " [" + esc(c.item) + "]" : "") : "") +
          (c.action ? " · action " + esc(c.action) : "") + "</li>";
      }).join("") + "</ul></div>" : "") +
      (actions.length && run.status === "succeeded" ? '<div class="card actions"><h2>Follow-ups</h2>' + actions.map(function (a) {
        return '<button type="button" class="action" data-action="' + esc(a.name) + '" title="' + esc(a.description || a.template) + '">' +
          esc(a.name) + "</button> ";
      }).join("") + '<p class="error" id="action-error"></p></div>' : "");
    el.querySelectorAll("button.approve, button.reject").forEach(function (b) {
      b.onclick = function () {
        var a = approvals[Number(b.dataset.i)], box = b.parentNode.querySelector(".comment");
        var body = { decision: b.classList.contains("approve") ? "approve" : "reject" };
        if (a.item != null) body.item = a.item;
        if (box && box.value) body.comment = box.value;
        api("POST", run.links.self + "/approvals/" + encodeURIComponent(a.step), body)
          .then(function () { return api("GET", run.links.self); }).then(function (r) { renderRun(r); })
          .catch(function (e) { $("#approval-error").textContent = e.message; });
      };
    });
    el.querySelectorAll("button.action").forEach(function (b) {
      b.onclick = function () {
        api("POST", run.links.self + "/actions/" + encodeURIComponent(b.dataset.action), {})
          .then(function (child) { location.hash = "#/runs/" + child.id; })
          .catch(function (e) { $("#action-error").textContent = e.message; });
      };
    });
  }

  // One run, kept live from its event stream: each event refreshes the view (debounced), and
  // a dropped stream reconnects with a fresh ticket after the last event it saw. With a step
  // (and an item) in the URL, that step's drill-down shows below the graph and follows too.
  function showRun(id, step, item) {
    view.innerHTML = '<div id="run-head"></div><div id="graph" class="graph"></div><div id="step-panel"></div><div id="run-error"></div>' +
      '<div id="run-follow"></div><div id="run-output"></div><div id="run-inputs"></div><div id="run-history"></div>';
    var alive = true, source = null, last = 0, ended = false, pending = null, history = false;
    function refresh() {
      return api("GET", "/v1/runs/" + encodeURIComponent(id)).then(function (run) {
        if (!alive) return run;
        renderRun(run, step);
        if (step) showStep(id, step, item);
        if (!history) {
          history = true;
          $("#run-history").innerHTML = timelineCard(run.steps);
          $("#timeline-filter").onchange = function () { loadTimeline(id, false); };
          $("#timeline-more").onclick = function () { loadTimeline(id, true); };
        }
        if (!$("#timeline tbody").dataset.next) loadTimeline(id, false);
        return run;
      });
    }
    function schedule() {
      if (pending) return;
      pending = setTimeout(function () { pending = null; refresh().catch(function () {}); }, 150);
    }
    function connect() {
      if (!alive || ended) return;
      api("POST", "/v1/runs/" + encodeURIComponent(id) + "/stream-tickets").then(function (t) {
        if (!alive) return;
        source = new EventSource(t.events_url + (last ? "&after=" + last : ""));
        source.onmessage = function (m) {
          var e = JSON.parse(m.data);
          last = e.seq;
          if (e.kind === "step.started" && e.step_id) {
            var node = document.querySelector('.node[data-step="' + CSS.escape(e.step_id) + '"]');
            if (node) { node.className = "node running"; node.dataset.status = "running"; }
          }
          // An end followed by run.resumed is not the end: the server closes the stream at
          // the run's current end, and then the page stops following.
          if (/^run\.(succeeded|failed|cancelled)$/.test(e.kind)) ended = true;
          if (e.kind === "run.resumed") ended = false;
          schedule();
        };
        source.onerror = function () {
          source.close();
          if (alive && !ended) setTimeout(connect, 1000);
        };
      }).catch(function () { if (alive && !ended) setTimeout(connect, 2000); });
    }
    refresh().then(function (run) {
      if (run.status === "succeeded" || run.status === "failed" || run.status === "cancelled") ended = true;
      connect();
    }).catch(function (e) { view.innerHTML = '<p class="error">' + esc(e.message) + "</p>"; });
    return function () { alive = false; if (source) source.close(); if (pending) clearTimeout(pending); };
  }

  function showTemplates() {
    view.innerHTML = "<h1>Templates</h1><table id=\"templates\"><thead><tr><th>Name</th><th>Latest</th>" +
      "<th>Versions</th><th>Description</th></tr></thead><tbody></tbody></table>";
    api("GET", "/v1/templates").then(function (list) {
      $("#templates tbody").innerHTML = list.templates.map(function (t) {
        return '<tr><td><a href="#/templates/' + encodeURIComponent(t.name) + '">' + esc(t.name) + "</a></td><td>" +
          esc(t.latest_version) + "</td><td>" + esc(t.versions.join(", ")) + "</td><td>" + esc(t.description || "") + "</td></tr>";
      }).join("");
    });
    return function () {};
  }

  function inputField(input) {
    var id = "input-" + input.name, dflt = input["default"];
    var hint = '<span class="hint">' + esc(input.type) + (input.required ? ", required" : "") +
      (input.description ? " — " + esc(input.description) : "") + "</span>";
    var field;
    if (input["enum"]) {
      // A required choice without a default starts empty (the browser and the API both say it
      // is required) rather than on its first value.
      field = '<select id="' + esc(id) + '" name="' + esc(input.name) + '"' + (input.required ? " required" : "") + ">" +
        '<option value=""' + (dflt == null ? " selected" : "") + ">" + (input.required ? "— choose —" : "") + "</option>" +
        input["enum"].map(function (v) {
          return '<option' + (v === dflt ? " selected" : "") + ' value="' + esc(JSON.stringify(v)) + '">' + esc(v) + "</option>";
        }).join("") + "</select>";
    } else if (input.type === "boolean") {
      field = '<input id="' + esc(id) + '" name="' + esc(input.name) + '" type="checkbox"' + (dflt ? " checked" : "") + ">";
    } else if (input.type === "array" || input.type === "object") {
      field = '<textarea id="' + esc(id) + '" name="' + esc(input.name) + '" rows="3" cols="60" placeholder="JSON">' +
        (dflt != null ? esc(JSON.stringify(dflt)) : "") + "</textarea>";
    } else {
      field = '<input id="' + esc(id) + '" name="' + esc(input.name) + '" type="' +
        (input.type === "integer" || input.type === "number" ? "number" : "text") + '"' +
        (input.type === "number" ? ' step="any"' : "") + ' value="' + (dflt != null ? esc(dflt) : "") + '">';
    }
    return '<label for="' + esc(id) + '">' + esc(input.name) + " " + hint + "</label>" + field;
  }

  // A problem's field errors shown at their fields (`inputs.NAME` beside the input NAME);
  // what belongs to no field goes to `general`.
  function showFieldErrors(form, e, general) {
    form.querySelectorAll(".field-error").forEach(function (x) { x.remove(); });
    form.querySelectorAll("[aria-invalid]").forEach(function (x) { x.removeAttribute("aria-invalid"); });
    var p = e.problem, rest = [];
    (p && p.errors && p.errors.length ? p.errors : [{ field: "", message: e.message }]).forEach(function (x) {
      var name = (x.field || "").replace(/^inputs\./, ""), el = name && form.elements[name];
      if (el && el.insertAdjacentHTML) {
        el.setAttribute("aria-invalid", "true");
        el.insertAdjacentHTML("afterend", '<span class="field-error" role="alert" data-field="' + esc(name) + '">' + esc(x.message) + "</span>");
      } else {
        rest.push((x.field ? x.field + ": " : "") + x.message);
      }
    });
    general.textContent = rest.join("\n");
  }

  function readInputs(form, inputs) {
    var out = {};
    inputs.forEach(function (input) {
      var el = form.elements[input.name];
      if (!el) return;
      if (input.type === "boolean") { out[input.name] = el.checked; return; }
      var raw = el.value;
      if (raw === "") return;
      if (input["enum"]) { out[input.name] = JSON.parse(raw); return; }
      if (input.type === "integer" || input.type === "number") { out[input.name] = Number(raw); return; }
      if (input.type === "array" || input.type === "object") {
        try { out[input.name] = JSON.parse(raw); } catch (e) {
          var err = new Error("not JSON: " + e.message);
          err.problem = { errors: [{ field: "inputs." + input.name, message: "not JSON: " + e.message }] };
          throw err;
        }
        return;
      }
      out[input.name] = raw;
    });
    return out;
  }

  function showTemplate(name) {
    view.innerHTML = "<h1>" + esc(name) + '</h1><label>Version <select id="version"></select></label>' +
      '<div id="template-body"></div>';
    api("GET", "/v1/templates/" + encodeURIComponent(name)).then(function (t) {
      var select = $("#version");
      select.innerHTML = t.versions.map(function (v, i) {
        return "<option value=\"" + i + "\"" + (i === t.versions.length - 1 ? " selected" : "") + ">" + esc(v.version) + " (" + esc(v.origin) + ")</option>";
      }).join("");
      function render() {
        var v = t.versions[Number(select.value)];
        $("#template-body").innerHTML = '<div class="card"><p>' + esc(v.description || "") + "</p>" +
          '<form id="run-form" class="run-form">' + v.inputs.map(inputField).join("") +
          '<p><button class="primary" type="submit">Start run</button></p><p id="run-form-error" class="error" role="alert"></p></form></div>' +
          '<div class="card"><h2>Source</h2><pre>' + esc(v.source) + "</pre></div>";
        $("#run-form").onsubmit = function (ev) {
          ev.preventDefault();
          var inputs;
          try { inputs = readInputs(ev.target, v.inputs); } catch (e) { showFieldErrors(ev.target, e, $("#run-form-error")); return; }
          api("POST", "/v1/runs", { template: t.name, version: v.version, inputs: inputs }).then(function (run) {
            location.hash = "#/runs/" + run.id;
          }).catch(function (e) { showFieldErrors(ev.target, e, $("#run-form-error")); });
        };
      }
      select.onchange = render;
      render();
    }).catch(function (e) { view.innerHTML = '<p class="error">' + esc(e.message) + "</p>"; });
    return function () {};
  }

  function route() {
    stopCurrent();
    stopCurrent = function () {};
    var signedIn = !!key();
    $("#sign-in").hidden = signedIn;
    $("#nav").hidden = !signedIn;
    view.hidden = !signedIn;
    if (!signedIn) { view.innerHTML = ""; return; }
    whoAmI().catch(function () {});
    var parts = (location.hash.replace(/^#\/?/, "") || "runs").split("/").map(decodeURIComponent);
    if (parts[0] === "runs" && parts[1]) {
      stopCurrent = showRun(parts[1], parts[2] === "steps" ? parts[3] : null, parts[4] === "items" ? parts[5] : null);
    }
    else if (parts[0] === "templates" && parts[1]) stopCurrent = showTemplate(parts[1]);
    else if (parts[0] === "templates") stopCurrent = showTemplates();
    else if (parts[0] === "schedules") stopCurrent = showSchedules();
    else stopCurrent = showRuns();
  }

  $("#sign-in-form").onsubmit = function (ev) {
    ev.preventDefault();
    var candidate = $("#api-key").value.trim();
    fetch("/v1/runs?limit=1", { headers: { "Authorization": "Bearer " + candidate } }).then(function (res) {
      if (!res.ok) { $("#sign-in-error").textContent = "That key was refused (" + res.status + ")."; return; }
      sessionStorage.setItem("weft.key", candidate);
      $("#api-key").value = "";
      $("#sign-in-error").textContent = "";
      route();
    });
  };
  $("#sign-out").onclick = signOut;
  window.addEventListener("hashchange", route);
  route();
})();
