// <weft-run>: a run's live progress, for embedding in any page (the agent app's chat UI).
//
//   <script src="https://WEFT/weft-run.js"></script>
//   <weft-run src="https://WEFT/v1/runs/RUN_ID" ticket="wft_st_..." ticket-url="/my-backend/ticket"></weft-run>
//
// `ticket` is a single-use stream ticket (POST /v1/runs/{id}/stream-tickets, minted by your
// backend with its API key; never put an API key in a page). The element follows the run's
// event stream and shows "Step 2/5", each step with a status icon, fan-out progress, and the
// error of a failed step; the header collapses and expands the list. If the stream drops
// before the run ends and `ticket-url` is set, the element POSTs there for a new ticket
// (expects JSON `{ticket}`) and resumes after the last event it saw. It sets its `status`
// attribute to the run's status and fires `weft-run:end` when the run ends.
//
// A run waiting for a person shows each approval's prompt. With `decide-url` set, it also
// shows Approve and Reject buttons that POST JSON `{step, item, decision, comment}` there (your
// backend decides with its API key: POST /v1/runs/{id}/approvals/{step}); without it the
// prompt only says the run waits. When the run ends it shows the run's output: text as the
// server rendered and sanitized it (markdown), anything else as JSON.
(function () {
  "use strict";
  if (customElements.get("weft-run")) return;
  var ICONS = { pending: "○", running: "◐", waiting: "⏸", succeeded: "✓", failed: "✗", skipped: "⤼", cancelled: "⊘" };
  var CSS = [
    ":host{display:block;font:14px/1.4 system-ui,sans-serif;border:1px solid #d0d7de;border-radius:8px;background:#fff;color:#1f2328;max-width:480px}",
    "button.head{all:unset;display:flex;gap:8px;align-items:center;width:100%;box-sizing:border-box;padding:8px 12px;cursor:pointer;font-weight:600}",
    ".count{margin-left:auto;color:#6e7781;font-weight:400}",
    "ol{list-style:none;margin:0;padding:0 12px 8px}",
    "li{display:flex;gap:8px;padding:2px 0;align-items:baseline}",
    ".icon{width:1.2em;text-align:center}",
    ".succeeded .icon,.icon.succeeded{color:#1a7f37}.failed .icon,.icon.failed{color:#cf222e}.running .icon{color:#0969da;display:inline-block;animation:spin 1s linear infinite}",
    ".skipped,.cancelled{color:#6e7781}",
    ".items{color:#6e7781;font-size:12px}",
    ".error{color:#cf222e;white-space:pre-wrap;font-size:12px;padding:0 12px 8px 32px}",
    ".waiting .icon,.icon.waiting{color:#8250df}",
    ".approval{margin:0 12px 8px;padding:8px;border:1px solid #d8b9ff;border-radius:6px;background:#fbefff}",
    ".approval .prompt{font-weight:600;margin-bottom:4px}.approval .note{color:#6e7781;font-size:12px}",
    ".approval button{font:inherit;padding:2px 10px;margin-right:6px;border:1px solid #d0d7de;border-radius:6px;background:#f6f8fa;cursor:pointer}",
    ".approval .decided{font-size:12px}.approval.rejected{border-color:#d4a72c;background:#fff8c5}",
    ".output{border-top:1px solid #d0d7de;padding:4px 12px 8px;overflow-x:auto}.output table{border-collapse:collapse}.output td,.output th{border:1px solid #d0d7de;padding:2px 6px}",
    ".output pre{white-space:pre-wrap;font-size:12px}",
    "[hidden]{display:none}",
    "@keyframes spin{to{transform:rotate(360deg)}}"
  ].join("\n");

  function text(s) { return document.createTextNode(s == null ? "" : String(s)); }
  function el(tag, cls, children) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    (children || []).forEach(function (c) { e.appendChild(typeof c === "string" ? text(c) : c); });
    return e;
  }

  class WeftRun extends HTMLElement {
    constructor() {
      super();
      this.attachShadow({ mode: "open" });
      this.steps = [];
      this.byId = {};
      this.runStatus = "pending";
      this.runError = null;
      this.last = 0;
      this.collapsed = false;
      this.source = null;
      this.approvals = [];
      this.output = null;
    }
    connectedCallback() {
      this.render();
      this.open(this.getAttribute("ticket"));
    }
    disconnectedCallback() { if (this.source) this.source.close(); }

    eventsUrl(ticket) {
      var src = (this.getAttribute("src") || "").replace(/\/+$/, "");
      return src + "/events?ticket=" + encodeURIComponent(ticket) + (this.last ? "&after=" + this.last : "");
    }
    open(ticket) {
      var self = this;
      if (!ticket) { this.fail("no stream ticket"); return; }
      var source = new EventSource(this.eventsUrl(ticket));
      this.source = source;
      // The stream's last word: the run's output (not in the event log, so no id).
      source.addEventListener("output", function (m) {
        var o;
        try { o = JSON.parse(m.data); } catch (_) { return; }
        self.output = o;
        self.render();
      });
      source.onmessage = function (m) {
        var e;
        try { e = JSON.parse(m.data); } catch (_) { return; }
        self.last = e.seq;
        self.retryDelay = 0;
        self.apply(e);
      };
      // The server closes the stream at the run's current end (an end that a `run.resumed`
      // follows is not one), so the end is known when the stream closes after it.
      source.onerror = function () {
        source.close();
        if (self.ended()) {
          self.dispatchEvent(new CustomEvent("weft-run:end", { detail: { status: self.runStatus }, bubbles: true }));
          return;
        }
        self.reconnect();
      };
    }
    // A dropped stream (a server restart, a network blip) asks the embedding page's
    // `ticket-url` for a fresh ticket and reopens after the last event seen, retrying with
    // backoff (1 s doubling to 30 s) for as long as the run has not ended.
    reconnect() {
      var self = this, url = this.getAttribute("ticket-url");
      if (!url) { this.fail("the progress stream was interrupted"); return; }
      var delay = this.retryDelay || 1000;
      this.retryDelay = Math.min(delay * 2, 30000);
      setTimeout(function () {
        if (!self.isConnected) return;
        fetch(url, { method: "POST", credentials: "same-origin" })
          .then(function (r) { if (!r.ok) throw new Error(r.statusText); return r.json(); })
          .then(function (t) { self.open(t.ticket); })
          .catch(function () { self.reconnect(); });
      }, delay);
    }
    approval(step, item) {
      var key = step + "/" + (item == null ? "" : item);
      var found = this.approvals.filter(function (a) { return a.key === key; })[0];
      if (!found) { found = { key: key, step: step, item: item }; this.approvals.push(found); }
      return found;
    }
    decide(a, decision, comment) {
      var self = this, url = this.getAttribute("decide-url");
      a.sending = true;
      this.render();
      fetch(url, {
        method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ step: a.step, item: a.item, decision: decision, comment: comment || undefined })
      }).then(function (r) { if (!r.ok) throw new Error("the decision was refused (" + r.status + ")"); })
        .catch(function (err) { a.problem = err.message; })
        .then(function () { a.sending = false; self.render(); });
    }
    ended() { return /^(succeeded|failed|cancelled)$/.test(this.runStatus); }
    fail(message) { this.runError = this.runError || message; this.render(); }
    step(id) {
      if (!this.byId[id]) { this.byId[id] = { id: id, status: "pending" }; this.steps.push(this.byId[id]); }
      return this.byId[id];
    }
    apply(e) {
      var d = e.data || {};
      var s = e.step_id ? this.step(e.step_id) : null;
      switch (e.kind) {
        case "run.started":
          (d.steps || []).forEach(this.step, this);
          this.template = d.template; this.runStatus = "running"; break;
        case "run.resumed": this.runStatus = "running"; this.runError = null; this.output = null; break;
        case "run.waiting": this.runStatus = "waiting"; break;
        case "run.continued": this.runStatus = "running"; break;
        case "approval.requested":
          s.status = "waiting";
          this.approval(e.step_id, e.item).prompt = d.prompt;
          break;
        case "approval.decided":
          var a = this.approval(e.step_id, e.item);
          a.decided = { approved: d.approved, by: d.by, comment: d.comment };
          break;
        case "run.succeeded": this.runStatus = "succeeded"; break;
        case "run.failed": this.runStatus = "failed"; this.runError = d.error || "the run failed"; break;
        case "run.cancelled": this.runStatus = "cancelled"; break;
        case "step.started":
          s.status = "running"; if (typeof d.items === "number") { s.total = d.items; s.done = 0; } break;
        case "step.progress": s.done = d.done; s.total = d.total; s.failedItems = d.failed; break;
        case "step.succeeded": case "step.failed": case "step.skipped": case "step.cancelled":
          s.status = e.kind.slice(5);
          if (d.error) s.error = d.error;
          // The end's `items` is the item count: every item is then finished (those that
          // failed under continue_on_error are counted apart), so the count is final here even
          // when the last progress event was throttled away.
          if (typeof d.items === "number") {
            s.total = d.items;
            if (e.kind === "step.succeeded") s.done = d.items - (s.failedItems || 0);
          } else if (d.items && typeof d.items === "object") { s.done = d.items.done; s.total = d.items.total; }
          break;
        case "task.retrying": if (s) s.retrying = d.next_attempt; break;
      }
      this.render();
    }
    render() {
      var root = this.shadowRoot, self = this;
      this.setAttribute("status", this.runStatus);
      var total = this.steps.length;
      var finished = this.steps.filter(function (s) { return /succeeded|failed|skipped|cancelled/.test(s.status); }).length;
      var current = this.steps.findIndex(function (s) { return s.status === "running"; });
      var position = this.ended() ? finished : (current >= 0 ? current + 1 : Math.min(finished + 1, total));
      var head = el("button", "head", [
        el("span", "icon " + this.runStatus, [ICONS[this.runStatus] || "○"]),
        el("span", "title", [this.template || "workflow"]),
        el("span", "count", [total ? "Step " + position + "/" + total + " · " + this.runStatus : this.runStatus])
      ]);
      head.setAttribute("part", "header");
      head.setAttribute("aria-expanded", String(!this.collapsed));
      head.onclick = function () { self.collapsed = !self.collapsed; self.render(); };
      var list = el("ol", "steps", this.steps.map(function (s) {
        var li = el("li", s.status, [el("span", "icon", [ICONS[s.status] || "○"]), el("span", "name", [s.id])]);
        li.dataset.step = s.id;
        li.dataset.status = s.status;
        if (s.total != null) li.appendChild(el("span", "items", [(s.done || 0) + "/" + s.total]));
        if (s.retrying && s.status === "running") li.appendChild(el("span", "items", ["attempt " + s.retrying]));
        return li;
      }));
      list.hidden = this.collapsed;
      var errors = this.steps.filter(function (s) { return s.error; }).map(function (s) {
        return el("div", "error step-error", [s.id + ": " + s.error]);
      });
      if (this.runError && !errors.length) errors.push(el("div", "error", [this.runError]));
      var canDecide = !!this.getAttribute("decide-url");
      var prompts = this.approvals.map(function (a) {
        var box = el("div", "approval" + (a.decided && !a.decided.approved ? " rejected" : ""), [
          el("div", "prompt", [(a.prompt || "Approve?") + (a.item != null ? " [" + a.item + "]" : "")])
        ]);
        box.dataset.step = a.step;
        if (a.item != null) box.dataset.item = a.item;
        if (a.decided) {
          box.appendChild(el("div", "decided", [(a.decided.approved ? "✓ Approved" : "⊘ Rejected") + " by " + a.decided.by +
            (a.decided.comment ? ": " + a.decided.comment : "")]));
        } else if (canDecide) {
          ["approve", "reject"].forEach(function (d) {
            var b = el("button", d, [d === "approve" ? "Approve" : "Reject"]);
            b.type = "button";
            b.disabled = !!a.sending;
            b.onclick = function () { self.decide(a, d); };
            box.appendChild(b);
          });
        } else {
          box.appendChild(el("div", "note", ["Waiting for a decision."]));
        }
        if (a.problem) box.appendChild(el("div", "error", [a.problem]));
        return box;
      });
      var output = [];
      if (this.output && this.output.output != null && this.ended()) {
        var out = el("div", "output");
        out.setAttribute("part", "output");
        if (typeof this.output.output === "string" && this.output.output_html != null) {
          // Sanitized by the server (ammonia) before it was sent.
          out.innerHTML = this.output.output_html;
        } else {
          out.appendChild(el("pre", null, [JSON.stringify(this.output.output, null, 2)]));
        }
        output.push(out);
      }
      var style = el("style", null, [CSS]);
      root.replaceChildren.apply(root, [style, head, list].concat(prompts, errors, output));
    }
  }
  customElements.define("weft-run", WeftRun);
})();
