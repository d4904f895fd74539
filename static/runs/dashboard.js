// skillaudit dashboard: progressive enhancement only; every page works without it.
"use strict";

(function () {
  // Times: show the reader's local time; the exact UTC stays in the title (hover).
  function localTimes(root) {
    const now = Date.now();
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      const when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      const seconds = Math.round((now - when.getTime()) / 1000);
      let relative = "";
      if (seconds >= 0 && seconds < 60) relative = seconds + " s ago";
      else if (seconds >= 60 && seconds < 3600) relative = Math.floor(seconds / 60) + " min ago";
      else if (seconds >= 3600 && seconds < 86400) relative = Math.floor(seconds / 3600) + " h ago";
      const local = when.toLocaleString(undefined, {
        year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
      });
      el.textContent = relative ? local + " (" + relative + ")" : local;
    });
  }

  // Filters: leave empty fields out of the URL so it stays readable.
  function tidyFilterForm(root) {
    root.querySelectorAll("form.filters").forEach(function (form) {
      form.addEventListener("submit", function () {
        form.querySelectorAll("input, select").forEach(function (field) {
          if (!field.value && field.type !== "checkbox") field.disabled = true;
        });
      });
    });
  }

  // Call tree: fold or unfold every node.
  function treeButtons(root) {
    root.querySelectorAll("button[data-tree]").forEach(function (button) {
      button.addEventListener("click", function () {
        const open = button.getAttribute("data-tree") === "open";
        document.querySelectorAll(".tree details").forEach(function (d) { d.open = open; });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    tidyFilterForm(document);
    treeButtons(document);
  });
})();
