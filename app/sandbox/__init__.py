"""The Stripe sandbox: an offline, stateful, Stripe-compatible server (see README, "Stripe sandbox")."""
