"""LLM stage: the language model as a local Hugging Face folder, and what other stages read
from it (input-embedding table, hidden width)."""
