// The console's only script (the CSP allows no inline code).
// 1. Every htmx request carries the CSRF token from the page's meta tag.
// 2. The environment switcher submits when an environment is picked.
// 3. After htmx replaces the page content, focus moves to it, as on a page load.
(function () {
  "use strict";
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRFToken"] = csrfToken();
  });
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit") && target.form) {
      target.form.requestSubmit();
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "main") {
      var summary = target.querySelector(".error-summary");
      (summary || target).focus();
    }
  });
})();
