// skillaudit: highlight a search's words on a run page opened from the run list.
// The list links here with "#q=<the search>"; this marks the words in the page's text and
// offers "next match". Marks are elements around text nodes' own text (never HTML parsing),
// so stored text is never interpreted. No inline handlers: the CSP forbids them.
"use strict";

(function () {
  const TOKEN = /[\p{L}\p{M}\p{N}\p{Co}]+/gu;
  // Scripts written without spaces (runs/search.py SPACELESS_RANGES): matched anywhere.
  const SPACELESS = /[\u0E00-\u0EFF\u1000-\u109F\u1780-\u17FF\u3040-\u30FF\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF\uFF66-\uFF9F]/u;
  const CLAUSE = /(-?)"([^"]*)"?|(-?)([^\s"]+)/g;

  function escapeRegExp(text) {
    return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }

  // The words to mark: what runs/search.py parses, exclusions left out.
  function pattern(q) {
    const alternatives = [];
    for (const m of q.matchAll(CLAUSE)) {
      const quoted = m[2] !== undefined;
      if (quoted ? m[1] : m[3]) continue;
      const text = quoted ? m[2] : m[4];
      for (const part of (text || "").match(TOKEN) || []) {
        if (part.length >= 3 && SPACELESS.test(part)) alternatives.push(escapeRegExp(part));
        else alternatives.push("(?<![\\p{L}\\p{M}\\p{N}])" + escapeRegExp(part) + "(?![\\p{L}\\p{M}\\p{N}])");
      }
    }
    if (!alternatives.length) return null;
    alternatives.sort(function (a, b) { return b.length - a.length; });
    return new RegExp(alternatives.join("|"), "giu");
  }

  function hidden(el) {
    for (; el && el.id !== "main"; el = el.parentElement) {
      if (el.hidden || getComputedStyle(el).display === "none") return true;
    }
    return false;
  }

  function textNodes(root) {
    const skip = "SCRIPT,STYLE,TEXTAREA,INPUT,SELECT,OPTION,BUTTON,FORM,NAV,HEADER";
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
      acceptNode: function (node) {
        if (!node.nodeValue.trim()) return NodeFilter.FILTER_REJECT;
        const parent = node.parentElement;
        if (!parent || parent.closest(skip) || parent.closest(".search-bar")) {
          return NodeFilter.FILTER_REJECT;
        }
        // Text another script hides (a payload's raw text while its tree is shown) is not
        // a match anyone can see; text in a closed <details> is (next match opens it).
        if (hidden(parent)) return NodeFilter.FILTER_REJECT;
        return NodeFilter.FILTER_ACCEPT;
      },
    });
    const nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    return nodes;
  }

  function mark(root, regex) {
    const marks = [];
    textNodes(root).forEach(function (node) {
      const text = node.nodeValue;
      regex.lastIndex = 0;
      let match;
      let last = 0;
      const pieces = [];
      while ((match = regex.exec(text)) !== null) {
        if (!match[0]) { regex.lastIndex++; continue; }
        if (match.index > last) pieces.push(document.createTextNode(text.slice(last, match.index)));
        const el = document.createElement("mark");
        el.className = "search-hit";
        el.textContent = match[0];
        pieces.push(el);
        marks.push(el);
        last = match.index + match[0].length;
      }
      if (!pieces.length) return;
      if (last < text.length) pieces.push(document.createTextNode(text.slice(last)));
      const parent = node.parentNode;
      pieces.forEach(function (piece) { parent.insertBefore(piece, node); });
      parent.removeChild(node);
    });
    return marks;
  }

  function show(marks, index, status) {
    marks.forEach(function (el) { el.classList.remove("current"); });
    const el = marks[index];
    el.classList.add("current");
    for (let up = el.parentElement; up; up = up.parentElement) {
      if (up.tagName === "DETAILS") up.open = true;
    }
    el.scrollIntoView({ block: "center" });
    status.textContent = "match " + (index + 1) + " of " + marks.length;
  }

  function start() {
    if (!location.hash.startsWith("#q=")) return;
    let q;
    try {
      q = decodeURIComponent(location.hash.slice(3).replace(/\+/g, " "));
    } catch (e) {
      return;
    }
    const regex = pattern(q);
    const main = document.getElementById("main");
    if (!regex || !main) return;
    const marks = mark(main, regex);
    const bar = document.createElement("div");
    bar.className = "search-bar";
    bar.setAttribute("role", "region");
    bar.setAttribute("aria-label", "Search matches");
    const label = document.createElement("span");
    label.textContent = "Search: " + q;
    const status = document.createElement("span");
    status.className = "search-status";
    status.setAttribute("aria-live", "polite");
    bar.append(label, " ", status);
    if (!marks.length) {
      status.textContent = "no match shown on this page (it may be in later events or in text cut for length)";
    } else {
      status.textContent = marks.length + (marks.length === 1 ? " match" : " matches");
      let index = -1;
      const next = document.createElement("button");
      next.type = "button";
      next.className = "search-next";
      next.textContent = "Next match";
      next.addEventListener("click", function () {
        index = (index + 1) % marks.length;
        show(marks, index, status);
      });
      const previous = document.createElement("button");
      previous.type = "button";
      previous.className = "search-previous";
      previous.textContent = "Previous";
      previous.addEventListener("click", function () {
        index = index <= 0 ? marks.length - 1 : index - 1;
        show(marks, index, status);
      });
      bar.append(" ", previous, " ", next);
    }
    main.prepend(bar);
  }

  // After "load": the page's other scripts have built what they show by then.
  if (document.readyState === "complete") start();
  else window.addEventListener("load", start);
})();
