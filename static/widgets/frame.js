// Inside a Tollgate widget's iframe: talks to the host page's <tollgate-*> element.
// Messages go only to the host origin the server checked (data-host-origin) and are
// accepted only from the parent window at that origin.
(() => {
  "use strict";
  const root = document.documentElement;
  const host = root.dataset.hostOrigin || null;
  const frameId = root.dataset.frameId || null;
  const embedded = window.parent !== window && host;
  const RELAYED = ["plan-selected", "checkout-completed", "subscription-changed"];
  const THEME_VARS = {
    "color-primary": "--tg-primary",
    "color-on-primary": "--tg-on-primary",
    "color-background": "--tg-bg",
    "color-surface": "--tg-surface",
    "color-text": "--tg-text",
    "color-muted": "--tg-muted",
    "color-border": "--tg-border",
    "color-accent": "--tg-accent",
    "font-family": "--tg-font",
    "radius": "--tg-radius",
  };

  const send = (message) => {
    if (embedded) window.parent.postMessage({ ...message, source: "tollgate", frameId }, host);
  };

  // --- size: the host sizes the iframe to the content, so there is never an inner scrollbar.
  let lastHeight = -1;
  const reportSize = () => {
    const height = Math.ceil(document.body.getBoundingClientRect().height);
    if (height !== lastHeight) {
      lastHeight = height;
      send({ type: "tollgate:resize", height });
    }
  };
  new ResizeObserver(reportSize).observe(document.body);

  // --- alerts shown inside the frame (refused actions, not-yet-available actions).
  const alertBox = document.getElementById("tg-alert");
  const showAlert = (text, info) => {
    if (!alertBox) return;
    alertBox.textContent = text;
    alertBox.classList.toggle("is-info", Boolean(info));
    alertBox.hidden = !text;
  };

  // --- errors: an error page carries its code; the host reflects it as state and an event.
  if (root.dataset.errorCode) {
    send({ type: "tollgate:error", code: root.dataset.errorCode, message: root.dataset.errorMessage || "" });
  }
  document.addEventListener("htmx:responseError", (event) => {
    const xhr = event.detail.xhr;
    let problem = { code: "http_" + xhr.status, detail: "Something went wrong. Try again." };
    try {
      problem = { ...problem, ...JSON.parse(xhr.responseText) };
    } catch (_) {
      /* not problem+json: keep the generic message */
    }
    showAlert(problem.detail);
    send({ type: "tollgate:error", code: problem.code, message: problem.detail });
  });
  document.addEventListener("htmx:sendError", () => {
    showAlert("The connection failed. Check your network and try again.");
    send({ type: "tollgate:error", code: "network_error", message: "Network error" });
  });

  // --- domain events from HX-Trigger headers, relayed to the host as namespaced DOM events.
  for (const name of RELAYED) {
    document.addEventListener("tollgate:" + name, (event) => {
      const { elt: _elt, ...detail } = event.detail || {};
      showAlert("");
      send({ type: "tollgate:event", name, detail });
    });
  }
  document.addEventListener("tollgate:navigate", (event) => {
    const url = event.detail && event.detail.url;
    if (typeof url === "string") send({ type: "tollgate:navigate", url });
  });

  // --- keep keyboard focus on the same control after htmx replaces it (period switch).
  let focusKey = null;
  document.addEventListener("htmx:beforeSwap", () => {
    const active = document.activeElement;
    focusKey = active && active.dataset ? active.dataset.focusKey || null : null;
  });
  document.addEventListener("htmx:afterSettle", () => {
    if (focusKey) {
      const target = document.querySelector('[data-focus-key="' + CSS.escape(focusKey) + '"]');
      if (target) target.focus();
      focusKey = null;
    }
    reportSize();
  });

  // --- messages from the host: only the parent, only from the checked origin.
  window.addEventListener("message", (event) => {
    if (!embedded || event.source !== window.parent || event.origin !== host) return;
    const data = event.data;
    if (!data || typeof data !== "object") return;
    if (data.type === "tollgate:theme" && (data.theme === "dark" || data.theme === "light")) {
      root.dataset.theme = data.theme;
      const vars = data.vars && typeof data.vars === "object" ? data.vars : {};
      for (const [name, prop] of Object.entries(THEME_VARS)) {
        const value = typeof vars[name] === "string" ? vars[name] : "";
        // Same shape rules as the server applies to the URL's c.* values.
        if (value && value.length <= 120 && !/[;{}<>\\]/.test(value)) root.style.setProperty(prop, value);
        else root.style.removeProperty(prop);
      }
    }
  });

  // Size first: by the time the host marks the element ready, the frame already has its height.
  reportSize();
  send({ type: "tollgate:ready", widget: root.dataset.widget, title: document.title });
  // Back from Checkout: the server checked the outcome; the host hears it once, after "ready".
  if (root.dataset.checkoutEvent) {
    try {
      send({ type: "tollgate:event", name: "checkout-completed", detail: JSON.parse(root.dataset.checkoutEvent) });
    } catch (_) {
      /* a malformed attribute is never sent */
    }
  }
})();
