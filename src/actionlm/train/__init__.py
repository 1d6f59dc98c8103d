"""Training stages (LLM-AR VQ-VAE and its tokenizer) and the machinery they share."""
