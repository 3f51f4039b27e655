// AURA cabinet behaviour: theme toggle and language switcher. No inline handlers (CSP).
(function () {
  "use strict";

  function cookie(name) {
    var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }

  function store(key, value) {
    try { localStorage.setItem(key, value); } catch (e) { /* storage disabled: the cookie still works */ }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.documentElement;

    var toggle = document.querySelector("[data-theme-toggle]");
    if (toggle) {
      toggle.setAttribute("aria-pressed", root.getAttribute("data-theme") === "dark" ? "true" : "false");
      toggle.addEventListener("click", function () {
        var next = root.getAttribute("data-theme") === "dark" ? "light" : "dark";
        root.setAttribute("data-theme", next);
        toggle.setAttribute("aria-pressed", next === "dark" ? "true" : "false");
        store("aura-theme", next);
        var body = new FormData();
        body.append("theme", next);
        fetch(toggle.getAttribute("data-theme-url"), {
          method: "POST", body: body, credentials: "same-origin",
          headers: { "X-CSRFToken": cookie("csrftoken") }
        }).catch(function () { /* offline: localStorage keeps the choice */ });
      });
    }

    var select = document.querySelector("select[data-autosubmit]");
    if (select) {
      store("aura-language", select.value);
      select.addEventListener("change", function () {
        store("aura-language", select.value);
        select.form.submit();
      });
    }
  });
})();
