"""The language-supervised losses of the skeleton encoders: GAP's multi-part contrastive loss
(Eqs. 4-6) and SUGAR's MIL-NCE (Eq. 3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_LOGIT_SCALE = 100.0  # CLIP's clamp on exp(logit scale)


def same_class_target(labels: torch.Tensor) -> torch.Tensor:
    """y of Eq. 5: 1 for same-class pairs, each row normalised to a distribution."""
    target = (labels[:, None] == labels[None, :]).float()
    return target / target.sum(dim=1, keepdim=True)


def kl_to_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL(y || softmax(logits)) per row, averaged over rows (GAP's code puts the target
    first, so positives missing from the prediction are what is penalised)."""
    log_p = F.log_softmax(logits, dim=1)
    terms = torch.where(target > 0, target * (target.clamp_min(1e-12).log() - log_p),
                        torch.zeros_like(log_p))
    return terms.sum(dim=1).mean()


class MultiPartContrastiveLoss(nn.Module):
    """L_con^multi = 1/K sum_k L_con^k (Eq. 6); L_con (Eq. 5) is the mean of the KL of the
    skeleton->text and text->skeleton similarity distributions (Eq. 4) within the batch.
    Each term k has its own learnable logit scale 1/tau, initialised to 1/0.07."""

    def __init__(self, n_terms: int, init_temperature: float = 0.07):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.full((n_terms,), math.log(1 / init_temperature)))

    def forward(self, skeleton: torch.Tensor, text: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
        """skeleton, text: [N, K, D] (sample i's k-th part feature and its class's text)."""
        s = F.normalize(skeleton.float(), dim=-1)
        t = F.normalize(text.float(), dim=-1)
        target = same_class_target(labels)
        scale = self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        logits = torch.einsum("ikd,jkd->kij", s, t) * scale[:, None, None]  # [K, N, N]
        terms = [0.5 * (kl_to_target(lk, target) + kl_to_target(lk.T, target)) for lk in logits]
        return torch.stack(terms).mean()


def mil_nce_loss(skeleton: torch.Tensor, texts: torch.Tensor, labels: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    """Eq. 3: -1/|B| sum_i log( sum_{j same class as i} sum_n exp(s_i.t_jn / tau) /
    sum_k sum_n exp(s_i.t_kn / tau) ). skeleton [B, D], texts [B, n, D] (sample j's n
    positive texts), both L2-normalised here."""
    s = F.normalize(skeleton.float(), dim=-1)
    t = F.normalize(texts.float(), dim=-1)
    logits = torch.einsum("id,jnd->ijn", s, t).flatten(1) / temperature  # [B, B * n]
    positive = (labels[:, None] == labels[None, :]).repeat_interleave(t.shape[1], dim=1)
    numerator = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)
    return (torch.logsumexp(logits, dim=1) - numerator).mean()
