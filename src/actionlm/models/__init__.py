"""Neural networks of the stages (the LLM-AR VQ-VAE and its losses)."""
