// The console's only script (the CSP allows no inline code).
// 1. Every htmx request carries the CSRF token from the page's meta tag.
// 2. The environment switcher submits when an environment is picked with the pointer; keyboard
//    users move through the options with the arrow keys and press the Switch button, so an
//    arrow key never navigates away.
// 3. After htmx replaces the page content, focus moves to it (or its error summary), as on a load.
// 4. A link with data-dialog="<id>" opens that <dialog> (e.g. a confirmation) instead of leading to
//    its fallback page; a button with data-close-dialog closes the dialog it is in.
(function () {
  "use strict";
  var pickedWithKeyboard = false;

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }
  function isSwitcher(target) {
    return target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit");
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRFToken"] = csrfToken();
  });
  document.addEventListener("keydown", function (event) {
    if (isSwitcher(event.target)) pickedWithKeyboard = true;
  });
  document.addEventListener("pointerdown", function (event) {
    if (isSwitcher(event.target)) pickedWithKeyboard = false;
  });
  document.addEventListener("focusin", function (event) {
    if (isSwitcher(event.target)) pickedWithKeyboard = false;
  });
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (isSwitcher(target) && !pickedWithKeyboard && target.form) target.form.requestSubmit();
  });
  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    var opener = target && target.closest("[data-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.getAttribute("data-dialog"));
      if (dialog instanceof HTMLDialogElement) {
        event.preventDefault();
        dialog.showModal();
      }
      return;
    }
    var closer = target && target.closest("[data-close-dialog]");
    var open = closer && closer.closest("dialog");
    if (open) open.close();
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    pickedWithKeyboard = false; // the sidebar, switcher included, was just replaced
    if (target && target.id === "main") {
      var summary = target.querySelector(".error-summary");
      (summary || target).focus();
    }
  });
})();
