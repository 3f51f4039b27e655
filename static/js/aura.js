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

    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var field = document.querySelector(button.getAttribute("data-copy"));
        field.select();
        var done = function () { button.textContent = button.getAttribute("data-copied"); };
        if (navigator.clipboard) { navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); }); }
        else { document.execCommand("copy"); done(); }
      });
    });

    document.querySelectorAll("[data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm(button.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });

    var poll = document.querySelector("[data-poll]");
    if (poll) { window.setTimeout(function () { window.location.reload(); }, parseInt(poll.getAttribute("data-poll"), 10)); }

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
