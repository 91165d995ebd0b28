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
    return h(
      React.Fragment,
      null,
      h("section", { className: "demo-panel", "aria-labelledby": "demo-billing" },
        h("h2", { id: "demo-billing" }, "Billing"),
        h(CustomerPortal, { ...common, id: "demo-portal" })),
      h("section", { className: "demo-panel", "aria-labelledby": "demo-plans" },
        h("h2", { id: "demo-plans" }, "Upgrade"),
        selected && h("p", { id: "demo-selected", role: "status" }, `You picked ${selected.planName} (${selected.action}).`),
        h(Paywall, { ...common, id: "demo-paywall", onPlanSelected: (detail) => setSelected(detail) })),
    );
  }
  ReactDOM.createRoot(root).render(h(App));
};

// The UMD builds load with `defer`; modules run after deferred scripts, so React is there.
if (window.React && window.ReactDOM) start();
else window.addEventListener("DOMContentLoaded", start);
