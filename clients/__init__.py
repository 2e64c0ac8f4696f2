"""The Architect's clients (the console arrives with the kernel issue)."""
