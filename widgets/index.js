// Loads the custom elements from your Tollgate server (the served script is the one source of
// truth, so the elements always match the server's widgets). Resolves once they are defined.
const pending = new Map();

/**
 * @param {string} baseUrl  Your Tollgate address, e.g. "https://billing.example.com".
 * @returns {Promise<void>}
 */
export function loadTollgate(baseUrl) {
  if (typeof window === "undefined") return Promise.resolve();
  if (window.customElements.get("tollgate-paywall")) return Promise.resolve();
  const src = new URL("/static/tollgate.js", baseUrl || window.location.href).href;
  if (!pending.has(src)) {
    const existing = Array.from(document.scripts).some((s) => s.src === src);
    if (!existing) {
      const script = document.createElement("script");
      script.src = src;
      script.async = true;
      script.addEventListener("error", () => pending.delete(src));
      document.head.appendChild(script);
    }
    pending.set(src, window.customElements.whenDefined("tollgate-paywall").then(() => undefined));
  }
  return pending.get(src);
}

export const EVENT_NAMES = Object.freeze([
  "tollgate:ready",
  "tollgate:plan-selected",
  "tollgate:checkout-completed",
  "tollgate:subscription-changed",
  "tollgate:error",
]);
