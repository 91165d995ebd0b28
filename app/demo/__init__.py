"""The /demo pages: a pretend host app embedding the widgets (mounted by the lead)."""
