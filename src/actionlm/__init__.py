"""actionlm: GAP, LLM-AR and SUGAR on one skeleton pipeline."""

__version__ = "0.1.0"
