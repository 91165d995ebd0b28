import type * as React from "react";
import type {
  BillingPeriod,
  CheckoutCompletedDetail,
  PlanSelectedDetail,
  ReadyDetail,
  SubscriptionChangedDetail,
  Theme,
  TollgateElement,
  TollgateErrorDetail,
  TollgateTexts,
} from "../index";

export interface TollgateWidgetProps {
  publishableKey: string;
  /** Your Tollgate address; loads /static/tollgate.js from it if the page has not. */
  baseUrl?: string;
  customerId?: string;
  /** Minted by your server: never put a server key in the browser. */
  customerToken?: string;
  productId?: string;
  billingPeriod?: BillingPeriod;
  theme?: Theme;
  texts?: TollgateTexts;
  id?: string;
  className?: string;
  style?: React.CSSProperties;
  onReady?: (detail: ReadyDetail, event: CustomEvent<ReadyDetail>) => void;
  onError?: (detail: TollgateErrorDetail, event: CustomEvent<TollgateErrorDetail>) => void;
  /**
   * Back from Stripe Checkout (the page loaded with its return marker): how it went. Sent once
   * per page load, by one of the page's widgets that have a customer.
   */
  onCheckoutCompleted?: (detail: CheckoutCompletedDetail, event: CustomEvent<CheckoutCompletedDetail>) => void;
}

export interface PaywallProps extends TollgateWidgetProps {
  onPlanSelected?: (detail: PlanSelectedDetail, event: CustomEvent<PlanSelectedDetail>) => void;
}

export interface CustomerPortalProps extends TollgateWidgetProps {
  customerId: string;
  customerToken: string;
  onPlanSelected?: (detail: PlanSelectedDetail, event: CustomEvent<PlanSelectedDetail>) => void;
  onSubscriptionChanged?: (
    detail: SubscriptionChangedDetail,
    event: CustomEvent<SubscriptionChangedDetail>,
  ) => void;
}

export interface CheckoutProps extends TollgateWidgetProps {
  customerId: string;
  customerToken: string;
  planId: string;
}

export declare const Paywall: React.ForwardRefExoticComponent<PaywallProps & React.RefAttributes<TollgateElement>>;
export declare const CustomerPortal: React.ForwardRefExoticComponent<
  CustomerPortalProps & React.RefAttributes<TollgateElement>
>;
export declare const Checkout: React.ForwardRefExoticComponent<CheckoutProps & React.RefAttributes<TollgateElement>>;

export declare function createComponents(react: typeof React): {
  Paywall: typeof Paywall;
  CustomerPortal: typeof CustomerPortal;
  Checkout: typeof Checkout;
};
