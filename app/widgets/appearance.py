"""Text overrides and theme variables a host passes in the frame's URL (`t.<key>`, `c.<name>`).

Values are validated against narrow patterns before they reach the page's nonce'd <style>, so a
crafted URL cannot inject CSS (or anything else); texts are plain strings escaped by Jinja.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

DEFAULT_TEXTS: dict[str, str] = {
    "paywall_title": "Choose your plan",
    "monthly": "Monthly",
    "annually": "Annual",
    "save_up_to": "Save up to {percent}%",
    "recommended": "Recommended",
    "free": "Free",
    "custom": "Custom",
    "custom_price_note": "Tailored to your needs",
    "starting_at": "Starting at",
    "per_month": "/ month",
    "per_year": "/ year",
    "billed_annually": "{amount} / month, billed annually",
    "everything_in": "Everything in {plan}, plus:",
    "includes": "Includes:",
    "addons": "Available add-ons",
    "your_addons": "Add-ons",
    "get_started": "Get started",
    "start_trial": "Start {days}-day trial",
    "upgrade": "Upgrade",
    "downgrade": "Downgrade",
    "current_plan": "Current plan",
    "switch_to_annual": "Switch to annual billing",
    "switch_to_monthly": "Switch to monthly billing",
    "contact_us": "Contact us",
    "trial_days_left": "{days} days left in your trial",
    "trial_last_day": "Last day of your trial",
    "scheduled": "Starts on {date}",
    "scheduled_away": "Changes to {plan} on {date}",
    "cancel_scheduled": "Cancel",
    "not_available_period": "Not available with {period} billing",
    "portal_title": "Your subscription",
    "change_plan": "Change plan",
    "no_subscription": "You have no active subscription yet.",
    "choose_plan": "Choose a plan",
    "usage": "Usage",
    "resets_on": "Resets on {date}",
    "renews_on": "Renews on {date}",
    "ends_on": "Ends on {date}",
    "trial_ends_on": "Trial ends on {date}",
    "unlimited": "Unlimited",
    "of": "{used} of {limit} {unit}",
    "back": "Back",
    "cancel_subscription": "Cancel subscription",
    "manage_billing": "Manage billing",
    "checkout_title": "Checkout",
    "continue_to_payment": "Continue to payment",
    "trial_then": "{days}-day free trial, then",
    "no_plans": "No plans are published for this product yet.",
    "plan_selected": "Your selection was sent to the app.",
    "confirm_title": "Confirm your new plan",
    "confirm_upgrade": "Upgrade now",
    "confirm_downgrade": "Confirm downgrade",
    "confirm_subscribe": "Subscribe",
    "confirm_switch": "Confirm switch",
    "due_now": "Due now",
    "next_renewal": "Next renewal on {date}",
    "takes_effect_on": "Takes effect at the end of your current period, on {date}. Until then you keep your current plan.",
    "upgrade_now_note": "Takes effect immediately; the price is prorated for the rest of this period.",
    "cancel_confirm": "Your subscription will end on {date}. You keep access until then.",
    "confirm_cancel": "Yes, cancel",
    "keep_subscription": "Keep subscription",
    "subscription_changed": "Your subscription was updated.",
    "subscribe": "Subscribe",
    "seats": "Quantity of {unit}",
    "billing_period": "Billing period",
    "order_summary": "Order summary",
    "subscribed": "You are subscribed to {plan}.",
    "checkout_success": "Payment received: you are now on {plan}.",
    "checkout_pending": "Your payment for {plan} is being confirmed.",
    "checkout_cancelled": "Checkout was cancelled: nothing changed.",
}

_COLOR = re.compile(r"^(#[0-9a-fA-F]{3,8}|(rgb|rgba|hsl|hsla)\([0-9.,%\s/]{1,60}\)|[a-zA-Z]{3,20})$")
_LENGTH = re.compile(r"^\d{1,3}(\.\d{1,2})?(px|rem|em|%)?$")
_FONT = re.compile(r"^[A-Za-z0-9 ,\-\"']{1,120}$")

# name in the URL -> (CSS custom property, pattern)
THEME_VARIABLES: dict[str, tuple[str, re.Pattern[str]]] = {
    "color-primary": ("--tg-primary", _COLOR),
    "color-on-primary": ("--tg-on-primary", _COLOR),
    "color-background": ("--tg-bg", _COLOR),
    "color-surface": ("--tg-surface", _COLOR),
    "color-text": ("--tg-text", _COLOR),
    "color-muted": ("--tg-muted", _COLOR),
    "color-border": ("--tg-border", _COLOR),
    "color-accent": ("--tg-accent", _COLOR),
    "font-family": ("--tg-font", _FONT),
    "radius": ("--tg-radius", _LENGTH),
}

MAX_TEXT_LENGTH = 200


def texts_from_query(query: Mapping[str, str]) -> dict[str, str]:
    texts = dict(DEFAULT_TEXTS)
    for key, value in query.items():
        if key.startswith("t.") and key[2:] in DEFAULT_TEXTS and value.strip():
            texts[key[2:]] = value.strip()[:MAX_TEXT_LENGTH]
    return texts


def theme_css(query: Mapping[str, str]) -> str:
    """`:root{--tg-primary:#7c3aed;...}` from validated `c.<name>` parameters, or ''."""
    declarations = []
    for name, (prop, pattern) in THEME_VARIABLES.items():
        value = query.get("c." + name, "").strip()
        if value and pattern.match(value):
            if prop == "--tg-radius" and value.replace(".", "", 1).isdigit():
                value += "px"
            declarations.append(f"{prop}:{value}")
    return ":root{" + ";".join(declarations) + "}" if declarations else ""


def fill(template: str, **values: object) -> str:
    """Replace `{name}` placeholders; unlike str.format an override cannot reach attributes."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", str(value))
    return template
