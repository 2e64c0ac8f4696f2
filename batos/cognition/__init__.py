"""The cognitive cycle: a message nobody understands becomes an audited,
trial-run, installed method. Owns the cycle's states and transitions, its
prompts, the guardian (the AST audit) and retrieval of context."""
