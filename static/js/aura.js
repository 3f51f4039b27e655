// AURA cabinet behaviour: theme toggle, language switcher, and tabs that follow a sign-out.
// No inline handlers (CSP).
(function () {
  "use strict";

  function cookie(name) {
    var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }

  function store(key, value) {
    try { localStorage.setItem(key, value); } catch (e) { /* storage disabled: the choice lasts for this page */ }
  }

  function stored(key) {
    try { return localStorage.getItem(key); } catch (e) { return null; }
  }

  function forget(key) {
    try { localStorage.removeItem(key); } catch (e) { /* storage disabled: nothing was kept */ }
  }

  // The page names its session with a public tag (never the cookie, which scripts cannot read, nor
  // the session key). Every tab writes the tag it was rendered with; a signed-out page removes it.
  // When another tab changes it (sign-out, or someone else signing in), a signed-in tab loads its
  // address afresh — a GET, never a form re-post — so it stops showing an account that is gone:
  // cabinet pages then send it to the login page.
  function followSession() {
    var meta = document.querySelector('meta[name="aura-session"]');
    if (!meta) { return; }
    var mine = meta.getAttribute("content");
    if (!mine) { forget("aura-session"); return; }
    store("aura-session", mine);
    window.addEventListener("storage", function (event) {
      if ((event.key === "aura-session" || event.key === null) && stored("aura-session") !== mine) {
        window.location.replace(window.location.pathname + window.location.search);
      }
    });
  }

  followSession();

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

    // A visitor's language travels in the page's address (there is no language cookie): the links
    // and forms of a page opened with ?lang= keep it, so the next page comes in it at once.
    var lang = new URLSearchParams(window.location.search).get("lang");
    if (lang) {
      var carry = function (address) {
        var url = new URL(address, window.location.href);
        if (url.origin !== window.location.origin || url.pathname.indexOf("/static/") === 0 || url.searchParams.has("lang")) { return null; }
        url.searchParams.set("lang", lang);
        return url.pathname + url.search + url.hash;
      };
      document.querySelectorAll("a[href]").forEach(function (link) {
        var to = carry(link.getAttribute("href"));
        if (to) { link.setAttribute("href", to); }
      });
      document.querySelectorAll("form[action]").forEach(function (form) {
        var to = carry(form.getAttribute("action"));
        if (to) { form.setAttribute("action", to); }
      });
    }

    var languageForm = document.querySelector("form[data-language-form]");
    if (languageForm && !window.auraReloading) {
      store("aura-language", document.documentElement.lang);
      languageForm.addEventListener("submit", function (event) {
        if (event.submitter && event.submitter.value) { store("aura-language", event.submitter.value); }
      });
    }
  });
})();
