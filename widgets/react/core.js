// The React wrappers, written against whichever React the caller passes in: no JSX, no build
// step, so the same file runs from a bundler (via ./index.js) or straight in a browser.
//
// Why not just render <tollgate-paywall onPlanSelected=...>: React 18 passes unknown props to
// custom elements as attributes and ignores custom events, so the wrapper sets dashed
// attributes itself and subscribes to the `tollgate:*` events with addEventListener. React 19
// behaves the same with dashed names, so one code path serves both.

const ATTRIBUTES = {
  publishableKey: "publishable-key",
  customerId: "customer-id",
  customerToken: "customer-token",
  productId: "product-id",
  planId: "plan-id",
  billingPeriod: "billing-period",
  theme: "theme",
  baseUrl: "base-url",
};

const EVENTS = {
  onReady: "tollgate:ready",
  onPlanSelected: "tollgate:plan-selected",
  onCheckoutCompleted: "tollgate:checkout-completed",
  onSubscriptionChanged: "tollgate:subscription-changed",
  onError: "tollgate:error",
};

function ensureScript(baseUrl) {
  if (typeof window === "undefined" || window.customElements.get("tollgate-paywall")) return;
  const src = new URL("/static/tollgate.js", baseUrl || window.location.href).href;
  if (Array.from(document.scripts).some((s) => s.src === src)) return;
  const script = document.createElement("script");
  script.src = src;
  script.async = true;
  document.head.appendChild(script);
}

export function createComponents(React) {
  const { createElement, forwardRef, useEffect, useRef } = React;

  function make(tag, displayName) {
    const Component = forwardRef(function TollgateWidget(props, forwardedRef) {
      const element = useRef(null);
      // Handlers are read at event time: changing a callback never re-subscribes or reloads.
      const latest = useRef(props);
      latest.current = props;

      useEffect(() => {
        ensureScript(props.baseUrl);
      }, [props.baseUrl]);

      useEffect(() => {
        const node = element.current;
        if (!node) return undefined;
        const listeners = Object.entries(EVENTS).map(([prop, type]) => {
          const listener = (event) => {
            const handler = latest.current[prop];
            if (typeof handler === "function") handler(event.detail, event);
          };
          node.addEventListener(type, listener);
          return [type, listener];
        });
        return () => {
          for (const [type, listener] of listeners) node.removeEventListener(type, listener);
        };
      }, []);

      const textsKey = props.texts ? JSON.stringify(props.texts) : "";
      useEffect(() => {
        if (element.current) element.current.texts = textsKey ? JSON.parse(textsKey) : null;
      }, [textsKey]);

      const setRef = (node) => {
        element.current = node;
        if (typeof forwardedRef === "function") forwardedRef(node);
        else if (forwardedRef) forwardedRef.current = node;
      };
      const attributes = { ref: setRef, id: props.id, class: props.className, style: props.style };
      for (const [prop, attribute] of Object.entries(ATTRIBUTES)) {
        const value = props[prop];
        if (value !== undefined && value !== null && value !== "") attributes[attribute] = String(value);
      }
      return createElement(tag, attributes);
    });
    Component.displayName = displayName;
    return Component;
  }

  return {
    Paywall: make("tollgate-paywall", "TollgatePaywall"),
    CustomerPortal: make("tollgate-customer-portal", "TollgateCustomerPortal"),
    Checkout: make("tollgate-checkout", "TollgateCheckout"),
  };
}
