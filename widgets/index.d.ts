// Typings of Tollgate's custom elements (served by /static/tollgate.js) and their events.

export type BillingPeriod = "MONTHLY" | "ANNUALLY";
export type Theme = "light" | "dark";

/** Text overrides, by key (see widgets/README.md for the list), e.g. { paywall_title: "Pricing" }. */
export type TollgateTexts = Partial<Record<string, string>>;

export interface PlanSelectedDetail {
  planId: string;
  planName: string;
  pricingType: "FREE" | "PAID" | "CUSTOM";
  billingPeriod: BillingPeriod;
  action: "subscribe" | "start_trial" | "upgrade" | "downgrade" | "switch_period" | "contact";
  customerId: string | null;
  /** false until the widget provisions by itself: your app decides what happens next. */
  provisioned: boolean;
}
/** Sent when the page comes back from Stripe Checkout (success or cancel). */
export interface CheckoutCompletedDetail {
  subscriptionId: string;
  planId: string;
  /** The subscription's status now, e.g. "ACTIVE"; "CANCELED" when Checkout was cancelled. */
  status: string;
  /** true once paid: the subscription runs on the new plan. */
  completed: boolean;
}
export interface SubscriptionChangedDetail {
  subscriptionId: string;
  planId?: string;
  status?: string;
}
export interface TollgateErrorDetail {
  code: string;
  message: string;
}
export interface ReadyDetail {
  widget: "paywall" | "portal" | "checkout";
}

export interface TollgateEventMap {
  "tollgate:ready": CustomEvent<ReadyDetail>;
  "tollgate:plan-selected": CustomEvent<PlanSelectedDetail>;
  "tollgate:checkout-completed": CustomEvent<CheckoutCompletedDetail>;
  "tollgate:subscription-changed": CustomEvent<SubscriptionChangedDetail>;
  "tollgate:error": CustomEvent<TollgateErrorDetail>;
}

export interface TollgateElement extends HTMLElement {
  publishableKey: string | null;
  customerId: string | null;
  customerToken: string | null;
  productId: string | null;
  planId: string | null;
  billingPeriod: BillingPeriod | string | null;
  theme: Theme | string | null;
  baseUrl: string | null;
  texts: TollgateTexts | null;
  /** Load the frame again (e.g. after your app changed the subscription). */
  reload(): void;
  addEventListener<K extends keyof TollgateEventMap>(
    type: K,
    listener: (this: TollgateElement, ev: TollgateEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | AddEventListenerOptions,
  ): void;
}

export type TollgatePaywallElement = TollgateElement;
export type TollgateCustomerPortalElement = TollgateElement;
export type TollgateCheckoutElement = TollgateElement;

declare global {
  interface HTMLElementTagNameMap {
    "tollgate-paywall": TollgatePaywallElement;
    "tollgate-customer-portal": TollgateCustomerPortalElement;
    "tollgate-checkout": TollgateCheckoutElement;
  }
  interface DocumentEventMap extends TollgateEventMap {}
}

export declare function loadTollgate(baseUrl: string): Promise<void>;
export declare const EVENT_NAMES: readonly (keyof TollgateEventMap)[];
