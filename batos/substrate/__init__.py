"""The cognitive substrate: models and LoRA adapters stored as blobs in the
image, the host processes that serve them under a memory budget, the personas
that speak through pinned model versions, and LoRA training."""
