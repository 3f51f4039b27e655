// Paddle.js checkout. The browser's checkout.completed event grants nothing: only a signed webhook does.
(function () {
  "use strict";

  function cookie(name) {
    var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }

  document.addEventListener("DOMContentLoaded", function () {
    var node = document.getElementById("paddle-config");
    if (!node || typeof window.Paddle === "undefined") { return; }
    var config = JSON.parse(node.textContent);
    if (!config.token) { return; }
    if (config.environment === "sandbox") { window.Paddle.Environment.set("sandbox"); }
    window.Paddle.Initialize({
      token: config.token,
      eventCallback: function (event) {
        if (event.name === "checkout.completed") {
          window.setTimeout(function () { window.location.assign(config.success_url); }, 1500);
        }
      }
    });

    document.querySelectorAll("[data-checkout-price]").forEach(function (button) {
      button.addEventListener("click", function () {
        window.Paddle.Checkout.open({
          items: [{ priceId: button.getAttribute("data-checkout-price"), quantity: 1 }],
          customer: config.email ? { email: config.email } : undefined,
          customData: { aura_account_id: String(config.account), aura_account_signature: config.account_signature },
          settings: { successUrl: config.success_url }
        });
      });
    });

    document.querySelectorAll("[data-update-payment]").forEach(function (button) {
      button.addEventListener("click", function () {
        fetch(button.getAttribute("data-update-payment"), {
          method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": cookie("csrftoken") }
        }).then(function (response) { return response.json(); }).then(function (data) {
          if (data.transaction_id) { window.Paddle.Checkout.open({ transactionId: data.transaction_id }); }
          else { window.alert(data.error); }
        });
      });
    });
  });
})();
