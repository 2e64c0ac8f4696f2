"""The Architect's clients: the kernel client, the console and its natural-language translator."""
