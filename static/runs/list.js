// skillaudit run list: suggestions for the skill, caller and channel inputs.
// Progressive enhancement: without it the inputs still take exact values.
"use strict";

(function () {
  function suggest(input) {
    const list = document.getElementById(input.getAttribute("list"));
    const url = input.getAttribute("data-suggest");
    if (!list || !url) return;
    let timer = null;
    let asked = null;
    function ask() {
      const prefix = input.value;
      if (prefix === asked) return;
      asked = prefix;
      fetch(url + "?prefix=" + encodeURIComponent(prefix), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(function (response) { return response.ok ? response.json() : { values: [] }; })
        .then(function (data) {
          if (input.value !== prefix) return; // typed on meanwhile
          list.replaceChildren();
          (data.values || []).forEach(function (value) {
            const option = document.createElement("option");
            option.value = value; // a property, never markup
            list.appendChild(option);
          });
        })
        .catch(function () { asked = null; });
    }
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(ask, 120);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("input[data-suggest][list]").forEach(suggest);
  });
})();
