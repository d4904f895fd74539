// skillaudit run page and call tree: JSON viewer, copy buttons, keyboard,
// live updates of a running run. Progressive enhancement: both pages work without it.
// CSP-safe: no inline script, no eval, no HTML built from data here; the only markup
// inserted is the server's own rendering of new events (rendering.timeline_items, every
// stored value escaped there). After it changes the page it dispatches "trace:rendered"
// on document (detail.root), so another script (search highlighting) can follow.
"use strict";

(function () {
  const FOLD_DEPTH = 4; // JSON nodes this deep and deeper start folded
  const FOLD_CHILDREN = 40; // and nodes with more children than this
  const MAX_POLLS = 20000; // a tab left open for days stops asking at last
  const MAX_POLL_FAILURES = 5;

  function rendered(root) {
    document.dispatchEvent(new CustomEvent("trace:rendered", { detail: { root: root } }));
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // --- the folding JSON viewer ---------------------------------------------------------

  function leaf(value) {
    if (value === null) return el("span", "jv-null", "null");
    switch (typeof value) {
      case "string": return el("span", "jv-str", value); // its line breaks shown (pre-wrap)
      case "number": return el("span", "jv-num", String(value));
      case "boolean": return el("span", "jv-bool", String(value));
      default: return el("span", "jv-null", String(value));
    }
  }

  function keyLabel(key) {
    if (key === undefined) return null;
    const span = el("span", "jv-key", typeof key === "number" ? String(key) : JSON.stringify(key));
    return span;
  }

  function jsonNode(value, key, depth) {
    const isArray = Array.isArray(value);
    if (value === null || typeof value !== "object") {
      const row = el("div", "jv-leaf");
      const label = keyLabel(key);
      if (label) { row.appendChild(label); row.appendChild(document.createTextNode(": ")); }
      row.appendChild(leaf(value));
      return row;
    }
    const keys = isArray ? value.map(function (_, i) { return i; }) : Object.keys(value);
    const details = el("details", "jv-node");
    if (depth < FOLD_DEPTH && keys.length <= FOLD_CHILDREN) details.open = true;
    const summary = el("summary");
    const label = keyLabel(key);
    if (label) { summary.appendChild(label); summary.appendChild(document.createTextNode(": ")); }
    summary.appendChild(document.createTextNode(isArray ? "[" : "{"));
    const n = keys.length;
    summary.appendChild(el("span", "jv-count",
      " " + n + (isArray ? (n === 1 ? " item " : " items ") : (n === 1 ? " key " : " keys "))));
    summary.appendChild(document.createTextNode(isArray ? "]" : "}"));
    details.appendChild(summary);
    const children = el("div", "jv-children");
    // Children are built when the node is first opened: a big folded array costs nothing.
    function fill() {
      if (children.childElementCount || !n) return;
      keys.forEach(function (k) { children.appendChild(jsonNode(value[k], k, depth + 1)); });
    }
    if (details.open) fill();
    details.addEventListener("toggle", function () { if (details.open) fill(); });
    details.appendChild(children);
    return details;
  }

  function buildViewer(pre) {
    if (pre.dataset.jvBuilt) return;
    let value;
    try { value = JSON.parse(pre.textContent); } catch (e) { return; }
    pre.dataset.jvBuilt = "1";
    const viewer = el("div", "jv");
    viewer.setAttribute("role", "tree");
    viewer.appendChild(jsonNode(value, undefined, 0));
    const toggle = el("button", "link jv-toggle", "show as JSON text");
    toggle.type = "button";
    toggle.addEventListener("click", function () {
      const asText = pre.classList.toggle("jv-hidden") === false;
      viewer.hidden = asText;
      toggle.textContent = asText ? "show as a tree" : "show as JSON text";
    });
    pre.classList.add("jv-hidden");
    pre.parentNode.insertBefore(viewer, pre);
    pre.parentNode.insertBefore(toggle, pre);
  }

  function viewers(root) {
    root.querySelectorAll("pre.payload[data-json]").forEach(function (pre) {
      const details = pre.closest("details");
      if (!details || details.open) buildViewer(pre);
      else details.addEventListener("toggle", function () { if (details.open) buildViewer(pre); });
    });
  }

  // --- copy buttons ----------------------------------------------------------------------

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    return new Promise(function (resolve, reject) {
      const area = el("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "copy-buffer";
      document.body.appendChild(area);
      area.select();
      const ok = document.execCommand("copy");
      area.remove();
      if (ok) resolve(); else reject(new Error("copy refused"));
    });
  }

  function copyButtons() {
    document.addEventListener("click", function (event) {
      const button = event.target.closest("button.copy");
      if (!button) return;
      event.preventDefault();
      let text;
      if (button.dataset.copyUrl) {
        text = fetch(button.dataset.copyUrl, { credentials: "same-origin" }).then(function (r) {
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.text();
        });
      } else if (button.dataset.copyTarget) {
        const target = document.getElementById(button.dataset.copyTarget);
        text = Promise.resolve(target ? target.textContent : "");
      } else {
        text = Promise.resolve(button.dataset.copy || "");
      }
      const label = button.dataset.label || button.textContent;
      button.dataset.label = label;
      text.then(copyText).then(function () {
        button.textContent = "copied";
        button.classList.add("done");
      }, function () {
        button.textContent = "copy failed";
      }).then(function () {
        setTimeout(function () { button.textContent = label; button.classList.remove("done"); }, 1500);
      });
    });
  }

  // --- keyboard ------------------------------------------------------------------------

  function isTyping(target) {
    return target && (target.isContentEditable || /^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName));
  }

  function visible(node) { return node.offsetParent !== null; }

  function keyboard(page) {
    const help = document.getElementById("keys-help");
    const helpButton = document.getElementById("keys-button");
    const closeButton = document.getElementById("keys-close");
    function showHelp(show) {
      if (!help) return;
      help.hidden = !show;
      if (show && closeButton) closeButton.focus();
    }
    if (helpButton) helpButton.addEventListener("click", function () { showHelp(help.hidden); });
    if (closeButton) closeButton.addEventListener("click", function () { showHelp(false); });

    function items() {
      return Array.prototype.filter.call(document.querySelectorAll(page.items), visible);
    }
    function current(list) {
      const active = document.activeElement;
      for (let i = 0; i < list.length; i++) {
        if (list[i] === active || list[i].contains(active) || list[i].classList.contains("kb-current")) return i;
      }
      return -1;
    }
    function go(node) {
      document.querySelectorAll(".kb-current").forEach(function (n) { n.classList.remove("kb-current"); });
      node.classList.add("kb-current");
      if (!node.hasAttribute("tabindex")) node.setAttribute("tabindex", "-1");
      node.focus({ preventScroll: true });
      node.scrollIntoView({ block: "nearest" });
    }
    function step(by, onlyFailed) {
      const list = items();
      if (!list.length) return false;
      const at = current(list);
      for (let i = at + by; i >= 0 && i < list.length; i += by) {
        if (!onlyFailed || page.failed(list[i])) { go(list[i]); return true; }
      }
      if (at === -1 && by > 0 && !onlyFailed) { go(list[0]); return true; }
      return false;
    }
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.key === "Escape" && help && !help.hidden) { showHelp(false); return; }
      if (isTyping(event.target)) return;
      switch (event.key) {
        case "j": step(1, false); break;
        case "k": step(-1, false); break;
        case "e":
          if (!step(1, true)) {
            const more = document.querySelector("a.next-error");
            if (more) more.click();
          }
          break;
        case "Enter": {
          // On a link or a button Enter keeps its own meaning.
          if (event.target.closest("a, button, summary")) return;
          const list = items();
          const at = current(list);
          if (at === -1) return;
          page.open(list[at]);
          break;
        }
        case "/": {
          const filter = document.querySelector(page.filter);
          if (filter) filter.focus();
          break;
        }
        case "?": showHelp(help ? help.hidden : false); break;
        default: return;
      }
      event.preventDefault();
    });
  }

  const RUN_PAGE = {
    items: "ol.timeline > li.event",
    filter: "#event-type",
    failed: function (node) { return node.classList.contains("failed"); },
    open: function (node) {
      const details = node.querySelector("details.json");
      if (details) {
        details.open = !details.open;
        const pre = details.querySelector("pre.payload[data-json]");
        if (details.open && pre) buildViewer(pre);
      }
    },
  };

  const TREE_PAGE = {
    items: ".tree .node",
    filter: "#tree-filter",
    failed: function (node) { return node.classList.contains("failed"); },
    open: function (node) {
      const link = node.querySelector("a.id");
      if (link) link.click();
    },
  };

  // --- the run page's filter form: empty choices stay out of the URL --------------------

  function tidyEventFilter() {
    const form = document.querySelector("form.event-filter");
    if (!form) return;
    form.addEventListener("submit", function () {
      form.querySelectorAll("select").forEach(function (field) {
        if (!field.value) field.disabled = true;
      });
    });
  }

  // --- the call tree's find box ---------------------------------------------------------

  function treeFilter() {
    const input = document.getElementById("tree-filter");
    if (!input) return;
    input.addEventListener("input", function () {
      const wanted = input.value.trim().toLowerCase();
      document.querySelectorAll(".tree .node").forEach(function (node) {
        const link = node.querySelector("a.id");
        const name = link ? link.textContent.toLowerCase() : "";
        node.classList.toggle("dim", wanted !== "" && name.indexOf(wanted) === -1);
      });
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault();
        const first = document.querySelector(".tree .node:not(.dim) a.id");
        if (first) first.focus();
      }
    });
  }

  // --- the time axis, redrawn as a live run grows ---------------------------------------

  const SVG = "http://www.w3.org/2000/svg";

  function formatSeconds(value) {
    if (value < 1) return Math.round(value * 1000) + " ms";
    if (value < 60) return value.toFixed(2) + " s";
    const minutes = Math.floor(value / 60);
    if (minutes < 60) return minutes + "m " + String(Math.floor(value % 60)).padStart(2, "0") + "s";
    return Math.floor(minutes / 60) + "h " + String(minutes % 60).padStart(2, "0") + "m";
  }

  // The same ticks as presentation.axis_ticks: a 1/2/5 step, at most six of them.
  function ticks(length) {
    if (length <= 0) return [[0, 0]];
    let step = 0.001;
    const factors = [2, 2.5, 2];
    let f = 0;
    while (length / step > 5) { step *= factors[f % 3]; f++; }
    const out = [];
    for (let at = 0; at <= length + 1e-9; at += step) out.push([at / length * 100, at]);
    return out;
  }

  function drawAxis(svg, length) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const list = ticks(length);
    list.forEach(function (tick, index) {
      const x = tick[0].toFixed(3) + "%";
      const line = document.createElementNS(SVG, "line");
      line.setAttribute("x1", x); line.setAttribute("x2", x);
      line.setAttribute("y1", "14"); line.setAttribute("y2", "20");
      const text = document.createElementNS(SVG, "text");
      text.setAttribute("x", x); text.setAttribute("y", "11");
      text.setAttribute("text-anchor", index === 0 ? "start" : index === list.length - 1 ? "end" : "middle");
      text.textContent = tick[1] ? formatSeconds(tick[1]) : "0";
      svg.appendChild(line); svg.appendChild(text);
    });
    svg.setAttribute("data-length", length.toFixed(3));
    svg.setAttribute("aria-label", "time axis: 0 to " + formatSeconds(length));
  }

  function rescale(root, length, stillRunning) {
    root.querySelectorAll(".track").forEach(function (track) {
      const rect = track.querySelector("rect");
      if (!rect) return;
      const start = parseFloat(track.dataset.s) || 0;
      let duration = parseFloat(track.dataset.d) || 0;
      if (track.dataset.open) {
        if (stillRunning) duration = Math.max(length - start, 0);
        else delete track.dataset.open;
        track.dataset.d = duration.toFixed(3);
        if (!stillRunning) rect.classList.remove("open");
      }
      if (length <= 0) return;
      const x = Math.min(Math.max(start / length * 100, 0), 100);
      const width = x < 100 ? Math.min(Math.max(duration / length * 100, 0.5), 100 - x) : 0.5;
      rect.setAttribute("x", x.toFixed(3) + "%");
      rect.setAttribute("width", Math.max(width, 0.5).toFixed(3) + "%");
    });
    root.querySelectorAll("svg.axis").forEach(function (svg) { drawAxis(svg, length); });
  }

  // --- live: a running run's page follows it ---------------------------------------------

  function setText(id, text) {
    const node = document.getElementById(id);
    if (node && text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function linkPairs(list) {
    // Results that arrived for calls this page shows: the call's "no result yet" becomes a
    // link, and links to events now on this page stay on it.
    list.querySelectorAll("li.event.tool_result").forEach(function (result) {
      const pair = result.querySelector("a.pair[data-seq]");
      if (!pair) return;
      const call = document.getElementById("event-" + pair.dataset.seq);
      if (!call) return;
      pair.setAttribute("href", "#event-" + pair.dataset.seq);
      pair.classList.remove("elsewhere");
      const pending = call.querySelector(".pair.pending");
      if (pending) {
        const link = el("a", "pair", "result #" + result.dataset.seq);
        link.setAttribute("href", "#event-" + result.dataset.seq);
        pending.replaceWith(link);
      }
    });
  }

  function live() {
    const section = document.getElementById("timeline");
    if (!section || section.dataset.running !== "1" || !section.dataset.liveUrl) return;
    const list = document.getElementById("timeline-list");
    const append = section.dataset.append === "1";
    const interval = Math.max(parseFloat(section.dataset.poll) || 2, 1) * 1000;
    let after = parseInt(section.dataset.after, 10) || 0;
    let polls = 0;
    let failures = 0;
    let timer = null;
    let stopped = false;
    let busy = false;

    function schedule() {
      if (stopped || document.hidden) return; // hidden: polling resumes when it shows
      clearTimeout(timer);
      timer = setTimeout(poll, interval);
    }

    function stop() { stopped = true; clearTimeout(timer); }

    function poll() {
      if (stopped || busy || document.hidden) return;
      if (++polls > MAX_POLLS) { stop(); return; }
      busy = true;
      const url = section.dataset.liveUrl + "?after=" + after + "&append=" + (append ? "1" : "0");
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (state) { failures = 0; apply(state); })
        .catch(function () { if (++failures >= MAX_POLL_FAILURES) stop(); })
        .then(function () { busy = false; schedule(); });
    }

    function apply(state) {
      if (append && state.events_html) {
        const empty = document.getElementById("no-events");
        if (empty) empty.remove();
        if (!list.querySelector(".axis-item")) {
          const axisItem = el("li", "axis-item");
          axisItem.setAttribute("aria-hidden", "true");
          const svg = document.createElementNS(SVG, "svg");
          svg.setAttribute("class", "axis");
          axisItem.appendChild(svg);
          list.appendChild(axisItem);
        }
        // Open bars of events that now have a successor end where it starts.
        list.querySelectorAll(".track[data-open]").forEach(function (track) {
          delete track.dataset.open;
          const rect = track.querySelector("rect");
          if (rect) rect.classList.remove("open");
        });
        const before = list.lastElementChild;
        list.insertAdjacentHTML("beforeend", state.events_html);
        after = state.last_sequence;
        let node = before ? before.nextElementSibling : list.firstElementChild;
        const added = [];
        for (; node; node = node.nextElementSibling) added.push(node);
        added.forEach(function (item) { viewers(item); localTimes(item); });
        linkPairs(list);
        added.forEach(rendered);
      } else if (!append && state.new_events > 0) {
        const notice = document.getElementById("live-new");
        if (notice) {
          notice.textContent = "";
          notice.appendChild(document.createTextNode(state.new_events + " new event" + (state.new_events === 1 ? "" : "s") + " since this page was loaded: "));
          const link = el("a", "", "see the last page");
          link.setAttribute("href", section.dataset.lastLink);
          notice.appendChild(link);
          notice.hidden = false;
        }
      }
      setText("event-count", Number(state.event_count).toLocaleString("en-US"));
      setText("fact-tokens", state.tokens);
      setText("fact-tool-calls", state.tool_calls);
      const failuresFact = setText("fact-failures", Number(state.failure_count).toLocaleString("en-US"));
      if (failuresFact) failuresFact.classList.toggle("err", state.failure_count > 0);
      if (state.failure_summary) setText("failure-summary", state.failure_summary);
      setText("fact-duration", state.duration + (state.running ? " so far" : ""));
      rescale(section, state.length_seconds, state.running);
      if (!state.running) finished(state);
    }

    function finished(state) {
      stop();
      section.dataset.running = "0";
      const badge = document.querySelector("#run-status .badge");
      if (badge) {
        badge.textContent = state.status;
        badge.className = "badge " + state.badge;
      }
      const notice = setText("live-notice", "This run finished: " + state.status + ".");
      if (notice) notice.classList.toggle("bad", state.badge === "bad");
      const finishedAt = document.getElementById("fact-finished");
      if (finishedAt && state.finished_at) {
        finishedAt.textContent = "";
        const time = el("time", "", state.finished_at_utc);
        time.setAttribute("datetime", state.finished_at);
        time.setAttribute("title", state.finished_at_utc);
        finishedAt.appendChild(time);
        localTimes(finishedAt);
      }
      if (state.output) {
        const output = setText("run-output", state.output);
        if (output) output.hidden = false;
        const none = document.getElementById("no-output");
        if (none) none.remove();
      }
      if (state.error) {
        setText("run-error", state.error);
        const errorSection = document.getElementById("error-section");
        if (errorSection) errorSection.hidden = false;
      }
      rendered(document.body);
    }

    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && !stopped) { clearTimeout(timer); poll(); }
    });
    schedule();
  }

  // Local times with their zone, the exact UTC instant in the title (as dashboard.js does
  // for the page; here for what this script adds).
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (node) {
      const when = new Date(node.getAttribute("datetime"));
      if (isNaN(when)) return;
      node.textContent = when.toLocaleString(undefined, {
        year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const runPage = document.getElementById("timeline");
    copyButtons();
    viewers(document);
    tidyEventFilter();
    treeFilter();
    keyboard(runPage ? RUN_PAGE : TREE_PAGE);
    live();
    rendered(document.body);
  });
})();
