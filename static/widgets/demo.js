// /demo: log the widgets' events and flip the theme, as a host app would.
(() => {
  "use strict";
  const log = document.getElementById("demo-log");
  const names = ["ready", "plan-selected", "checkout-completed", "subscription-changed", "error"];
  for (const name of names) {
    document.addEventListener("tollgate:" + name, (event) => {
      if (!log) return;
      const item = document.createElement("li");
      const source = event.target && event.target.localName ? event.target.localName : "?";
      item.textContent = `${source} → tollgate:${name} ${JSON.stringify(event.detail)}`;
      item.dataset.event = name;
      log.prepend(item);
    });
  }
  const toggle = document.getElementById("demo-theme");
  if (toggle) {
    toggle.addEventListener("click", () => {
      const dark = toggle.getAttribute("aria-pressed") !== "true";
      toggle.setAttribute("aria-pressed", String(dark));
      document.documentElement.classList.toggle("demo-dark", dark);
      for (const el of document.querySelectorAll("tollgate-paywall, tollgate-customer-portal, tollgate-checkout")) {
        el.setAttribute("theme", dark ? "dark" : "light");
      }
      document.dispatchEvent(new CustomEvent("demo:theme", { detail: { dark } }));
    });
  }
})();
