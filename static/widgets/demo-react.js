// /demo/react: the same page as /demo, built with the React wrappers of widgets/react.
import { createComponents } from "/demo/assets/tollgate-react-core.js";

const start = () => {
  const React = window.React;
  const { Paywall, CustomerPortal } = createComponents(React);
  const root = document.getElementById("demo-react-root");
  if (!root) return;
  const config = root.dataset;
  const h = React.createElement;

  function App() {
    const [theme, setTheme] = React.useState("light");
    const [selected, setSelected] = React.useState(null);
    const [checkout, setCheckout] = React.useState(null);
    React.useEffect(() => {
      const onTheme = (event) => setTheme(event.detail.dark ? "dark" : "light");
      document.addEventListener("demo:theme", onTheme);
      return () => document.removeEventListener("demo:theme", onTheme);
    }, []);
    const common = {
      publishableKey: config.publishableKey,
      customerId: config.customerId,
      customerToken: config.customerToken,
      baseUrl: config.baseUrl || window.location.origin,
      theme,
    };
    // Back from Stripe Checkout: the widget says how it went (once, on the first customer widget).
    const onCheckoutCompleted = (detail) => setCheckout(detail);
    return h(
      React.Fragment,
      null,
      checkout && h("p", { id: "demo-checkout", role: "status", className: "demo-lead" },
        checkout.completed
          ? `Checkout completed: subscription ${checkout.subscriptionId} is now on ${checkout.planId} (${checkout.status}).`
          : `Checkout did not complete (${checkout.status}).`),
      h("section", { className: "demo-panel", "aria-labelledby": "demo-billing" },
        h("h2", { id: "demo-billing" }, "Billing"),
        h(CustomerPortal, { ...common, id: "demo-portal", onCheckoutCompleted })),
      h("section", { className: "demo-panel", "aria-labelledby": "demo-plans" },
        h("h2", { id: "demo-plans" }, "Upgrade"),
        selected && h("p", { id: "demo-selected", role: "status" }, `You picked ${selected.planName} (${selected.action}).`),
        h(Paywall, { ...common, id: "demo-paywall", onPlanSelected: (detail) => setSelected(detail), onCheckoutCompleted })),
    );
  }
  ReactDOM.createRoot(root).render(h(App));
};

// The UMD builds load with `defer`; modules run after deferred scripts, so React is there.
if (window.React && window.ReactDOM) start();
else window.addEventListener("DOMContentLoaded", start);
