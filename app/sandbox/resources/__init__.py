"""Stripe resources, one module per family; importing a module registers its routes."""
