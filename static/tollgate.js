/*! Tollgate embed: <tollgate-paywall>, <tollgate-customer-portal>, <tollgate-checkout>. Apache-2.0 */
// Each element shows its widget in an iframe served by Tollgate, sized to its content, and
// turns the frame's messages into DOM events on the element. Safe to load more than once.
(() => {
  "use strict";
  if (!window.customElements || customElements.get("tollgate-paywall")) return;

  const script = document.currentScript;
  const SCRIPT_ORIGIN = script && script.src ? new URL(script.src, location.href).origin : null;
  const ATTRS = ["publishable-key", "customer-id", "customer-token", "product-id", "plan-id", "billing-period", "theme"];
  const OBSERVED = [...ATTRS, "base-url", "texts"];
  const EVENTS = ["plan-selected", "checkout-completed", "subscription-changed"];
  // CSS custom properties on the element (or inherited) that theme the frame's content.
  const THEME_VARS = ["color-primary", "color-on-primary", "color-background", "color-surface", "color-text", "color-muted", "color-border", "color-accent", "font-family", "radius"];
  // Where the frame may send the whole window: Tollgate's own hosted pages, Stripe's pages.
  const NAV_PATHS = /^\/(checkout|billing|sandbox\/stripe)\//;
  const NAV_HOSTS = ["checkout.stripe.com", "billing.stripe.com"];
  // frame.js runs before the frame's load event, so silence after it means a refused frame.
  const READY_TIMEOUT_MS = 3000;
  const camel = (name) => name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  let counter = 0;

  // Stripe's pages send the customer back to this page marked `tollgate_checkout=success|cancel`
  // (Tollgate appends checkoutCompleted and subscriptionId). The marker is taken off the address
  // at once, so a reload or a bookmark never replays it; the customer widgets show it.
  const MARKER = "tollgate_checkout";
  const RETURN_PARAMS = [MARKER, "checkoutCompleted", "subscriptionId"];
  let checkoutReturn = null;
  let checkoutEmitted = false;
  const here = new URL(location.href);
  const outcome = here.searchParams.get(MARKER);
  if (outcome === "success" || outcome === "cancel") {
    checkoutReturn = { result: outcome, subscription: here.searchParams.get("subscriptionId") || "" };
    for (const name of RETURN_PARAMS) here.searchParams.delete(name);
    try {
      history.replaceState(history.state, "", here.href);
    } catch (_) {
      /* a sandboxed host document: the marker stays, harmlessly */
    }
  }
  // Where Checkout and the Billing Portal return to: this page, without the marker or fragment.
  const hostUrl = () => {
    const url = new URL(location.href);
    for (const name of RETURN_PARAMS) url.searchParams.delete(name);
    url.hash = "";
    return url.href;
  };

  // `--tollgate-initial-height` reserves room for the frame before it says its size: the host's
  // layout does not jump, and the frame paints without waiting for its script and the resize
  // message. Unset, the frame stays folded until then (measured no slower: the paint is held
  // up by the cross-site frame's new renderer, not by the message), so a frame the browser
  // refuses never shows. "Loading…" lies over the room, and only if the frame is slow to be ready.
  const STYLE =
    ":host{display:block;position:relative;min-height:2rem}" +
    "iframe{display:block;width:100%;border:0;height:var(--tollgate-initial-height,0);color-scheme:normal;background:transparent}" +
    "[part=loading]{position:absolute;top:0;left:0;padding:1rem;font:inherit;opacity:.7;animation:tg-show .4s step-end both}" +
    "@keyframes tg-show{from{visibility:hidden}}" +
    "[part=error]{padding:1rem;border:1px solid #b91c1c;border-radius:8px;color:#b91c1c;font:inherit}" +
    ":host([ready]) [part=loading],:host([error]) [part=loading],:host(:not([error])) [part=error],[part=error]:empty{display:none}";

  let shared = null;
  const sheet = () => {
    if (!shared) {
      shared = new CSSStyleSheet();
      shared.replaceSync(STYLE);
    }
    return shared;
  };

  class TollgateElement extends HTMLElement {
    static get observedAttributes() {
      return OBSERVED;
    }

    constructor() {
      super();
      this._id = "tg" + ++counter + Math.random().toString(36).slice(2, 8);
      const shadow = this.attachShadow({ mode: "open" });
      // A constructed stylesheet, not a <style>: hosts with a strict style-src CSP allow it.
      shadow.adoptedStyleSheets = [sheet()];
      shadow.innerHTML = '<div part="loading" role="status">Loading…</div><div part="error" role="alert"></div>';
      // Attached once it has its address: an attached iframe without one first loads about:blank.
      this._frame = document.createElement("iframe");
      this._frame.setAttribute("part", "frame");
      this._errorBox = shadow.querySelector("[part=error]");
      this._frame.title = this.constructor.frameTitle;
      // Scripts and forms run inside; same-origin keeps the frame's own origin (not "null").
      this._frame.setAttribute("sandbox", "allow-scripts allow-same-origin allow-forms allow-popups");
      this._frame.setAttribute("allow", "payment");
      this._onMessage = this._onMessage.bind(this);
      this._frame.addEventListener("load", () => this._armTimeout());
    }

    connectedCallback() {
      window.addEventListener("message", this._onMessage);
      this._schedule();
    }

    disconnectedCallback() {
      window.removeEventListener("message", this._onMessage);
      clearTimeout(this._timer);
    }

    attributeChangedCallback(name, oldValue, value) {
      if (oldValue === value) return;
      if (name === "theme" && this.hasAttribute("ready") && this._src) {
        // A theme flip needs no reload: tell the frame.
        this._post({ type: "tollgate:theme", theme: value === "dark" ? "dark" : "light", vars: this._themeVars() });
        return;
      }
      this._schedule();
    }

    // Several attributes are usually set together: load once, after the current task.
    _schedule() {
      if (this._pending) return;
      this._pending = true;
      queueMicrotask(() => {
        this._pending = false;
        if (this.isConnected) this._load();
      });
    }

    _origin() {
      const base = this.getAttribute("base-url");
      try {
        return base ? new URL(base, location.href).origin : SCRIPT_ORIGIN;
      } catch (_) {
        return null;
      }
    }

    _url() {
      const origin = this._origin();
      if (!origin) return null;
      const url = new URL(this.constructor.path, origin);
      const params = url.searchParams;
      for (const name of ATTRS) {
        const value = this.getAttribute(name);
        if (value) params.set(name, value);
      }
      const texts = this.texts;
      if (texts && typeof texts === "object") {
        for (const key of Object.keys(texts)) params.set("t." + key, String(texts[key]));
      }
      const vars = this._themeVars();
      for (const name of Object.keys(vars)) params.set("c." + name, vars[name]);
      params.set("host-origin", location.origin);
      params.set("host-url", hostUrl());
      if (checkoutReturn && !this._returnShown && this.getAttribute("customer-id")) {
        // Every customer widget on the page shows the outcome once; the event is sent once.
        this._returnShown = true;
        params.set("checkout-result", checkoutReturn.result);
        params.set("checkout-subscription", checkoutReturn.subscription);
      }
      params.set("frame-id", this._id);
      return url;
    }

    _themeVars() {
      const style = getComputedStyle(this);
      const vars = {};
      for (const name of THEME_VARS) {
        const value = style.getPropertyValue("--tollgate-" + name).trim();
        if (value) vars[name] = value;
      }
      return vars;
    }

    _load() {
      if (!this.getAttribute("publishable-key")) {
        this._fail("missing_publishable_key", "Set the publishable-key attribute.");
        return;
      }
      const url = this._url();
      if (!url) {
        this._fail("missing_base_url", "Set base-url: Tollgate's address could not be found.");
        return;
      }
      if (url.href === this._src) return;
      this._src = url.href;
      this._tollgateOrigin = url.origin;
      this.removeAttribute("ready");
      this.removeAttribute("error");
      this._errorBox.textContent = "";
      this.setAttribute("loading", "");
      if (this._frame.style.height === "0px") this._frame.style.removeProperty("height"); // after _fail
      this._frame.src = url.href;
      if (!this._frame.isConnected) this.shadowRoot.append(this._frame);
    }

    // A frame the browser refused (e.g. frame-ancestors) loads but never says hello.
    _armTimeout() {
      clearTimeout(this._timer);
      if (this.hasAttribute("ready") || this.hasAttribute("error")) return;
      this._timer = setTimeout(() => {
        if (!this.hasAttribute("ready")) {
          this._fail("frame_unavailable", "The widget could not be loaded. Is this origin allowed?");
        }
      }, READY_TIMEOUT_MS);
    }

    _post(message) {
      if (this._frame.contentWindow && this._tollgateOrigin) {
        this._frame.contentWindow.postMessage(message, this._tollgateOrigin);
      }
    }

    _emit(name, detail) {
      this.dispatchEvent(new CustomEvent("tollgate:" + name, { detail, bubbles: true, composed: true }));
    }

    _fail(code, message) {
      // Nothing to show in the frame (or a browser's refusal page): the message takes its room.
      this._frame.style.height = "0";
      this.removeAttribute("loading");
      this.setAttribute("error", code);
      this._errorBox.textContent = message;
      this._emit("error", { code, message });
    }

    _onMessage(event) {
      // Only our own frame, only from the Tollgate origin it was loaded from.
      if (event.source !== this._frame.contentWindow || event.origin !== this._tollgateOrigin) return;
      const data = event.data;
      if (!data || typeof data !== "object" || data.source !== "tollgate" || data.frameId !== this._id) return;
      switch (data.type) {
        case "tollgate:ready":
          clearTimeout(this._timer);
          this.removeAttribute("loading");
          if (!this.hasAttribute("error")) {
            this.setAttribute("ready", "");
            this._emit("ready", { widget: data.widget });
          }
          break;
        case "tollgate:resize":
          if (typeof data.height === "number" && data.height >= 0) {
            this._frame.style.height = Math.min(Math.ceil(data.height), 20000) + "px";
          }
          break;
        case "tollgate:error":
          clearTimeout(this._timer);
          // The frame shows its own message; the element reflects the state for the host.
          this.removeAttribute("loading");
          this.setAttribute("error", String(data.code || "error"));
          this._emit("error", { code: String(data.code || "error"), message: String(data.message || "") });
          break;
        case "tollgate:event":
          if (data.name === "checkout-completed") {
            if (checkoutEmitted) break;
            checkoutEmitted = true;
          }
          if (EVENTS.includes(data.name)) this._emit(data.name, data.detail || {});
          break;
        case "tollgate:navigate":
          this._navigate(data.url);
          break;
      }
    }

    _navigate(raw) {
      let url;
      try {
        url = new URL(String(raw));
      } catch (_) {
        url = null;
      }
      const allowed =
        url &&
        ((url.origin === this._tollgateOrigin && NAV_PATHS.test(url.pathname)) ||
          (url.protocol === "https:" && NAV_HOSTS.includes(url.hostname)));
      if (!allowed) {
        this._emit("error", { code: "navigation_refused", message: "Refused to navigate to " + String(raw) });
        return;
      }
      // Payment pages run top-level, never inside the frame.
      window.location.assign(url.href);
    }

    get texts() {
      if (this._texts) return this._texts;
      try {
        return JSON.parse(this.getAttribute("texts") || "null");
      } catch (_) {
        return null;
      }
    }

    set texts(value) {
      this._texts = value && typeof value === "object" ? { ...value } : null;
      this._schedule();
    }

    reload() {
      this._src = null;
      this._schedule();
    }
  }

  // Attributes mirrored as properties: el.customerToken = "..." is el.setAttribute("customer-token", ...).
  for (const name of [...ATTRS, "base-url"]) {
    Object.defineProperty(TollgateElement.prototype, camel(name), {
      get() {
        return this.getAttribute(name);
      },
      set(value) {
        if (value === null || value === undefined || value === "") this.removeAttribute(name);
        else this.setAttribute(name, String(value));
      },
    });
  }

  const define = (tag, path, frameTitle) => {
    if (!customElements.get(tag)) {
      customElements.define(tag, class extends TollgateElement {
        static path = path;
        static frameTitle = frameTitle;
      });
    }
  };
  define("tollgate-paywall", "/widgets/paywall", "Plans and pricing");
  define("tollgate-customer-portal", "/widgets/portal", "Your subscription");
  define("tollgate-checkout", "/widgets/checkout", "Checkout");
})();
