"""Per-class pools of text embeddings, the targets of the language-supervised encoders.

GAP's global term draws one synonym (or the paragraph) of the sample's class per step, and
each part term uses the class's description of that part; a group of parts (e.g. hand+arm in
the 4-part partition) uses the normalised mean of its parts' embeddings. SUGAR draws several
positive texts per sample from the class's motion (and visual) descriptions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from actionlm.errors import ActionlmError
from actionlm.text.encode import load_text_embeddings


@dataclass
class TextPool:
    """Texts per class: ``vectors`` [K, S, D] (rows past ``counts[k]`` are padding)."""

    vectors: torch.Tensor
    counts: torch.Tensor  # int64 [K]

    def sample(self, labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """[B, n, D]: n texts drawn uniformly (with replacement) from each label's pool."""
        draw = torch.rand(len(labels), n, generator=generator)
        pick = (draw * self.counts[labels.cpu()][:, None]).long()
        return self.vectors[labels.cpu()[:, None], pick]

    def means(self) -> torch.Tensor:
        """[K, D]: each class's normalised mean text (its prototype)."""
        valid = torch.arange(self.vectors.shape[1])[None, :] < self.counts[:, None]
        mean = (self.vectors * valid[..., None]).sum(1) / self.counts[:, None]
        return F.normalize(mean, dim=-1)


class ClassTexts:
    """The text_embeddings.parquet rows of classes 0..K-1, grouped by kind and part."""

    def __init__(self, path: str | os.PathLike, n_classes: int):
        self.path = path
        rows, vectors = load_text_embeddings(path)
        self.width = vectors.shape[1]
        self.n_classes = n_classes
        self.rows = rows
        self.vectors = torch.from_numpy(np.array(vectors))

    def _select(self, mask: np.ndarray, what: str) -> TextPool:
        rows = self.rows[mask]
        missing = sorted(set(range(self.n_classes)) - set(rows["class_id"].tolist()))
        if missing:
            raise ActionlmError(
                f"{self.path}: no {what} text for class(es) {missing[:10]}"
                f"{'...' if len(missing) > 10 else ''} (re-run describe/encode-text for this "
                "dataset's classes)"
            )
        groups = [np.flatnonzero(mask & (self.rows["class_id"].to_numpy() == k))
                  for k in range(self.n_classes)]
        most = max(len(g) for g in groups)
        vectors = torch.zeros(self.n_classes, most, self.width)
        for k, g in enumerate(groups):
            vectors[k, : len(g)] = self.vectors[g]
        return TextPool(vectors, torch.tensor([len(g) for g in groups]))

    def pool(self, kinds: tuple[str, ...]) -> TextPool:
        """Every text of these kinds (e.g. synonym; or part, paragraph, visual)."""
        return self._select(self.rows["kind"].isin(kinds).to_numpy(), "/".join(kinds))

    def part_group(self, group: str) -> torch.Tensor:
        """[K, D]: the class's description of a part group such as ``hand+arm`` (the
        normalised mean of its parts' embeddings)."""
        parts = group.split("+")
        mask = (self.rows["kind"] == "part") & self.rows["part"].isin(parts)
        return self._select(mask.to_numpy(), f"{group} part").means()
