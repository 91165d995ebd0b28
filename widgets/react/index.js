import * as React from "react";
import { createComponents } from "./core.js";

export const { Paywall, CustomerPortal, Checkout } = createComponents(React);
export { createComponents };
