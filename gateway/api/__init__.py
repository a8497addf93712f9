"""The HTTP layer: one blueprint per surface, thin: parse, call the service, render."""
