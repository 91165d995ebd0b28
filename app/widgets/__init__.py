"""Server side of the embeddable widgets: /widgets pages, their view models, access checks."""
