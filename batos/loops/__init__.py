"""The slower loops beside the Architect: Socratic Contrapunto and dissonance,
autotelic goals, ALFRED's judging and LoRA training, codex amendments."""
