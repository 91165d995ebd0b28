"""The operator console under /admin: sign-in, environment switcher, catalog and customer screens."""
