"""Knowledge stage: class descriptions from language models (cached), their text embeddings."""
