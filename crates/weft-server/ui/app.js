// The weft web UI: a few views over the /v1 API, routed by the URL hash. No framework and no
// build step. The API key lives in sessionStorage (this tab only) and goes out as a bearer
// token; the live run view follows the run's event stream through a single-use ticket.
(function () {
  "use strict";
  var esc = function (s) { return window.weftMarkdown.escape(s == null ? "" : s); };
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
        try { values = readInputs(ev.target, inputs); } catch (e) { $("#ask-form-error").textContent = "Not JSON: " + e.message; return; }
        api("POST", "/v1/runs", { template: a.template, version: v.version, inputs: values })
          .then(function (run) { location.hash = "#/runs/" + run.id; })
          .catch(function (e) {
            var p = e.problem;
            $("#ask-form-error").textContent = p && p.errors ? p.errors.map(function (x) { return x.field + ": " + x.message; }).join("\n") : e.message;
          });
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

  // Runs list, refreshed every two seconds while shown.
  function showRuns() {
    view.innerHTML = askBox() + '<h1>Runs <span id="runs-tenant" class="meta"></span></h1><table id="runs"><thead><tr><th>Run</th><th>Template</th>' +
      '<th>Status</th><th>Started</th><th>Duration</th></tr></thead><tbody></tbody></table>';
    var alive = true;
    function load() {
      api("GET", "/v1/runs?limit=100").then(function (list) {
        if (!alive) return;
        $("#runs tbody").innerHTML = list.runs.map(function (r) {
          return '<tr data-run="' + esc(r.id) + '"><td><a href="#/runs/' + esc(r.id) + '">' + esc(r.id) + "</a></td><td>" +
            esc(r.template) + "@" + esc(r.version) + "</td><td>" + badge(r.status) + "</td><td>" +
            esc(fmtTime(r.started_at)) + "</td><td>" + esc(fmtDuration(r.duration_ms)) + "</td></tr>";
        }).join("") || '<tr><td colspan="5">No runs of tenant ' + esc(tenant || "") + ' yet. Start one from <a href="#/templates">Templates</a>' +
          (tenant === "default" ? ", or with <code>weft run</code>." : ', or with <code>weft run --tenant ' + esc(tenant || "") + "</code> (plain <code>weft run</code> starts runs of tenant <code>default</code>).") +
          "</td></tr>";
      }).catch(function () {});
    }
    // The tenant first, so that even the first "no runs" line names it.
    var named = whoAmI().then(function (name) { if (alive) $("#runs-tenant").textContent = "of tenant " + name; }).catch(function () {});
    wireAsk();
    named.then(load);
    var timer = setInterval(load, 2000);
    return function () { alive = false; clearInterval(timer); };
  }

  // The step graph: steps in columns by depth, edges drawn from `needs`.
  function renderGraph(el, steps) {
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
        return '<div class="node ' + esc(s.status) + '" data-step="' + esc(s.id) + '" data-status="' + esc(s.status) + '">' +
          '<div class="name">' + esc(s.id) + '</div><div class="meta">' + esc(s.tool || "") + " · " + esc(s.status) +
          (s.attempts > 1 ? " · " + s.attempts + " attempts" : "") +
          (s.duration_ms != null ? " · " + esc(fmtDuration(s.duration_ms)) : "") + "</div>" + items + "</div>";
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

  function renderOutput(output) {
    if (output == null) return "";
    if (typeof output === "string") return '<div class="output markdown">' + window.weftMarkdown.render(output) + "</div>";
    return "<pre>" + esc(JSON.stringify(output, null, 2)) + "</pre>";
  }

  function renderRun(run) {
    var failed = run.steps.filter(function (s) { return s.error; });
    $("#run-head").innerHTML = "<h1>" + esc(run.template) + "@" + esc(run.version) + " " +
      '<span id="run-status">' + badge(run.status) + "</span></h1>" +
      '<div class="meta">' + esc(run.id) + " · started " + esc(fmtTime(run.started_at)) +
      (run.duration_ms != null ? " · " + esc(fmtDuration(run.duration_ms)) : "") + "</div>" +
      (run.parent ? '<div class="meta">started by <a href="#/runs/' + esc(run.parent.run_id) + '">' + esc(run.parent.run_id) + "</a>" +
        (run.parent.step ? " · step " + esc(run.parent.step) + (run.parent.item != null ? " item " + esc(run.parent.item) : "") : "") +
        (run.parent.action ? " · action " + esc(run.parent.action) : "") + "</div>" : "") +
      (run.status === "running" || run.status === "waiting" ? ' <button id="cancel" type="button">Cancel</button>' : "") +
      (run.status === "failed" || run.status === "cancelled" ? ' <button id="resume" type="button">Resume</button>' : "");
    var cancel = $("#cancel"), resume = $("#resume");
    if (cancel) cancel.onclick = function () { api("POST", run.links.cancel).then(renderRun); };
    if (resume) resume.onclick = function () { api("POST", run.links.resume).then(function () { route(); }); };
    renderGraph($("#graph"), run.steps);
    $("#run-error").innerHTML = run.error
      ? '<div class="card"><h2>Error</h2><pre class="error run-error">' + esc(run.error) + "</pre>" +
        failed.map(function (s) {
          return '<h3>Step ' + esc(s.id) + '</h3><pre class="error step-error">' + esc(s.error) + "</pre>";
        }).join("") + "</div>" : "";
    $("#run-output").innerHTML = run.output != null ? '<div class="card"><h2>Output</h2>' + renderOutput(run.output) + "</div>" : "";
    $("#run-inputs").innerHTML = '<div class="card"><h2>Inputs</h2><pre>' + esc(JSON.stringify(run.inputs, null, 2)) + "</pre></div>";
    renderFollowUps(run);
  }

  // Approvals waiting for a decision, the runs this run started, and its follow-up actions.
  function renderFollowUps(run) {
    var approvals = run.approvals || [], children = run.children || [], actions = run.actions || [];
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
          .then(function () { return api("GET", run.links.self); }).then(renderRun)
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
  // a dropped stream reconnects with a fresh ticket after the last event it saw.
  function showRun(id) {
    view.innerHTML = '<div id="run-head"></div><div id="graph" class="graph"></div><div id="run-error"></div>' +
      '<div id="run-follow"></div><div id="run-output"></div><div id="run-inputs"></div>';
    var alive = true, source = null, last = 0, ended = false, pending = null;
    function refresh() {
      return api("GET", "/v1/runs/" + encodeURIComponent(id)).then(function (run) {
        if (!alive) return run;
        renderRun(run);
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
      if (input.type === "array" || input.type === "object") { out[input.name] = JSON.parse(raw); return; }
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
          try { inputs = readInputs(ev.target, v.inputs); } catch (e) { $("#run-form-error").textContent = "Not JSON: " + e.message; return; }
          api("POST", "/v1/runs", { template: t.name, version: v.version, inputs: inputs }).then(function (run) {
            location.hash = "#/runs/" + run.id;
          }).catch(function (e) {
            var p = e.problem;
            $("#run-form-error").textContent = p && p.errors ? p.errors.map(function (x) { return x.field + ": " + x.message; }).join("\n") : e.message;
          });
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
    if (parts[0] === "runs" && parts[1]) stopCurrent = showRun(parts[1]);
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
