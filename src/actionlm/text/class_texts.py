"""Per-class pools of texts, the targets of the language-supervised encoders, and the two ways
of turning them into vectors: the stored embeddings (a frozen text encoder) or the text
encoder itself, trained along (GAP fine-tunes its text encoder, Sec. 4.1).

GAP's global term draws one of the class's name and synonyms (or the paragraph) per step, and
each part term uses the class's description of that part; a group of parts (e.g. hand+arm in
the 4-part partition) uses the normalised mean of its parts' embeddings. SUGAR draws several
positive texts per sample from the class's motion (and visual) descriptions.

A kind the table does not hold is an error naming the stage that makes it (KIND_SOURCES):
knowledge never vanishes from a run silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from actionlm.errors import ActionlmError
from actionlm.text.encode import load_text_embeddings
from actionlm.text.encoders import TextEncoder


@dataclass
class TextPool:
    """Texts per class as row indices of the table: ``rows`` [K, S] (entries past
    ``counts[k]`` are padding)."""

    rows: torch.Tensor
    counts: torch.Tensor  # int64 [K]

    def sample(self, labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """[B, n] rows: n texts drawn uniformly (with replacement) from each label's pool."""
        labels = labels.cpu()
        pick = (torch.rand(len(labels), n, generator=generator) * self.counts[labels][:, None])
        return self.rows[labels[:, None], pick.long()]

    def mask(self) -> torch.Tensor:
        """[K, S]: which entries of ``rows`` are real."""
        return torch.arange(self.rows.shape[1])[None, :] < self.counts[:, None]


# Which stage writes each kind of text (the error when a table lacks one).
KIND_SOURCES = {
    "name": "encode-text (each class's name, from the descriptions' class_name)",
    "part": "describe (GAP's questions, or GAP's files: knowledge.import_gap)",
    "synonym": "describe (GAP's questions, or GAP's files: knowledge.import_gap)",
    "paragraph": "describe (GAP's questions, or GAP's files: knowledge.import_gap)",
    "motion": "describe (SUGAR's question; GAP's imported files have none)",
    "visual": "describe-visual (knowledge.visual.enabled, which needs a vision-model endpoint)",
}


class ClassTexts:
    """The text_embeddings.parquet rows of classes 0..K-1, grouped by kind and part."""

    def __init__(self, path: str | os.PathLike, n_classes: int):
        self.path = path
        rows, vectors = load_text_embeddings(path)
        self.width = vectors.shape[1]
        self.n_classes = n_classes
        self.rows = rows
        self.texts: list[str] = rows["text"].tolist()
        self.encoder_name: str = rows.attrs["encoder"]
        self.vectors = torch.from_numpy(np.array(vectors))

    def _select(self, mask: np.ndarray, what: str) -> TextPool:
        class_ids = self.rows["class_id"].to_numpy()
        missing = sorted(set(range(self.n_classes)) - set(class_ids[mask].tolist()))
        if missing:
            raise ActionlmError(
                f"{self.path}: no {what} text for class(es) {missing[:10]}"
                f"{'...' if len(missing) > 10 else ''} (re-run describe/encode-text for this "
                "dataset's classes)"
            )
        groups = [np.flatnonzero(mask & (class_ids == k)) for k in range(self.n_classes)]
        rows = torch.zeros(self.n_classes, max(len(g) for g in groups), dtype=torch.long)
        for k, g in enumerate(groups):
            rows[k, : len(g)] = torch.from_numpy(g)
        return TextPool(rows, torch.tensor([len(g) for g in groups]))

    def pool(self, kinds: tuple[str, ...]) -> TextPool:
        """Every text of these kinds (e.g. synonym; or motion, visual); each kind must be in
        the table."""
        held = set(self.rows["kind"])
        for kind in kinds:
            if kind not in held:
                raise ActionlmError(
                    f"{self.path}: no {kind!r} texts; they are made by "
                    f"{KIND_SOURCES.get(kind, 'no stage (unknown kind)')}")
        return self._select(self.rows["kind"].isin(kinds).to_numpy(), "/".join(kinds))

    def part_pool(self, group: str) -> TextPool:
        """The descriptions of a part group such as ``hand+arm`` (all its parts' texts)."""
        mask = (self.rows["kind"] == "part") & self.rows["part"].isin(group.split("+"))
        return self._select(mask.to_numpy(), f"{group} part")


class TextVectors(nn.Module):
    """Rows of the text table -> L2-normalised vectors: looked up (``encoder`` None: frozen)
    or embedded by the text encoder with gradients (fine-tuning)."""

    def __init__(self, texts: ClassTexts, encoder: TextEncoder | None = None):
        super().__init__()
        self.table = texts
        self.encoder = encoder
        if encoder is not None:
            if encoder.name != texts.encoder_name:
                raise ActionlmError(f"{texts.path}: embedded with {texts.encoder_name!r}, but "
                                    f"the text encoder to fine-tune is {encoder.name!r}")
            self.module = encoder.module  # registered: its weights train and checkpoint

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        if self.encoder is None:
            return F.normalize(self.table.vectors[rows], dim=-1)
        unique, inverse = torch.unique(rows, return_inverse=True)
        embedded = self.encoder.embed_trainable([self.table.texts[i] for i in unique.tolist()])
        return F.normalize(embedded.float(), dim=-1)[inverse.to(embedded.device)]

    def means(self, pool: TextPool, labels: torch.Tensor | None = None) -> torch.Tensor:
        """[B, D] (or [K, D] without ``labels``): each class's normalised mean text."""
        rows, mask = pool.rows, pool.mask()
        if labels is not None:
            rows, mask = rows[labels.cpu()], mask[labels.cpu()]
        vectors = self(rows)
        mask = mask.to(vectors.device)[..., None]
        return F.normalize((vectors * mask).sum(-2) / mask.sum(-2), dim=-1)
