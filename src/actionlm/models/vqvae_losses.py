"""Training losses of LLM-AR's VQ-VAE (Qu et al., CVPR 2024): the VQ-VAE terms (Eq. 11) and
the human-inductive-bias terms (Eqs. 3-7), combined as Eq. 12:

    L = L_rec + L_embed + omega1 L_commit + omega2 (L_Zipf + L_context + MMD)

Each bias term can be switched off (the paper's Table 4 ablation); a switched-off term is still
computed, detached, so that the training curves show it either way. Choices where the paper is
silent:

- Token usage (Eq. 3): hard (straight-through) Gumbel-softmax samples over -dist / tau, so
  t^b counts tokens exactly and still has gradients. ``gumbel_tau`` divides the distances
  before the unit-scale Gumbel noise is added, so a sample is the nearest code with
  probability softmax(-dist / tau) (torch's own ``tau`` would only soften the gradient).
  Default 1, Eq. 3 as written. Note: in the embedded default (SmolLM2, c = 0.1) neighbouring
  codes lie a few tenths of a geodesic unit apart and the nearest code gets only ~6% of the
  mass, so the Zipf and context terms see a much flatter usage than the argmin tokens; a
  smaller tau sharpens it but scales these terms' gradients by 1/tau (tau = 0.1 let the
  latents drift from the codes in 220 steps).
- Zipf (Eq. 4): usage summed over the batch, sorted in decreasing order, divided by B x W, and
  compared by Jensen-Shannon divergence (natural log, so in [0, ln 2]) with
  p_i ~ 1 / (i + beta)^alpha, i = 1..U. Logs are clamped at 1e-12 so unused codes get a
  finite gradient.
- Context (Eq. 5): Corr(t^b) = 2 sum_u min(t_u, t_{u+U/2}), the number of tokens of the
  sentence that belong to a matched (u, u + U/2) pair, so L_context lies in [0, 1] and is 0
  exactly when every token's partner occurs as often as it does.
- MMD (Eq. 7): biased (V-statistic) squared MMD, which is >= 0 and 0 for identical sets,
  between the codes' Euclidean images (log map at 0, i.e. what the decoder and the LLM see) and
  ``mmd_rows`` rows of the LLM's input-embedding matrix drawn once with the run's seed. Kernel:
  mean of Gaussians exp(-|x - y|^2 / (m h)), m in {0.5, 1, 2}, with h the median squared
  distance between the sampled LLM rows (fixed for the run).
- L_embed / L_commit (Eq. 11): squared Euclidean norm |f - f^d|^2 of each latent vector (f^d
  the Euclidean image of its code), averaged over latents, with the stop-gradient on the other
  side. A per-element mean would weaken the commitment by d_u (576 to 5120x) and let the
  latents drift away from the codes; L_rec: smooth L1 (beta 1), mean over normalised joints.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from actionlm.errors import ActionlmError
from actionlm.models.vqvae import Codebook, VQVAEOutput

KERNEL_SCALES = (0.5, 1.0, 2.0)
LOG_FLOOR = 1e-12


@dataclass(frozen=True)
class LossConfig:
    zipf: bool = True
    context: bool = True
    mmd: bool = True
    zipf_alpha: float = 1.0
    zipf_beta: float = 2.7
    omega1: float = 0.02  # commitment weight
    omega2: float = 0.2  # human-bias weight
    gumbel_tau: float = 1.0
    mmd_rows: int = 2048

    def validate(self) -> LossConfig:
        problems = []
        if self.omega1 < 0 or self.omega2 < 0:
            problems.append(f"omega1/omega2 must be >= 0, got {self.omega1}/{self.omega2}")
        if not self.gumbel_tau > 0:
            problems.append(f"gumbel_tau must be > 0, got {self.gumbel_tau}")
        if not self.zipf_alpha > 0 or not self.zipf_beta > -1:
            problems.append(
                f"Zipf needs alpha > 0 and beta > -1, got {self.zipf_alpha}, {self.zipf_beta}"
            )
        if self.mmd_rows < 2:
            problems.append(f"mmd_rows must be >= 2, got {self.mmd_rows}")
        if problems:
            raise ActionlmError("VQ-VAE loss config: " + "; ".join(problems))
        return self


def squared_norm(diff: torch.Tensor) -> torch.Tensor:
    """|f - f^d|^2 of Eq. 11: squared norm of each latent vector, averaged over latents."""
    return diff.square().sum(-1).mean()


def token_usage(neg_distances: torch.Tensor, tau: float) -> torch.Tensor:
    """t^b of Eq. 3: per sequence, how often each code is used, through hard Gumbel-softmax
    samples over -dist / tau ([B, W, U] -> [B, U])."""
    return F.gumbel_softmax(neg_distances / tau, hard=True, dim=-1).sum(1)


def zipf_distribution(codes: int, alpha: float, beta: float) -> torch.Tensor:
    """D_Zipf of Eq. 2: p_i proportional to 1 / (i + beta)^alpha for ranks i = 1..U."""
    weights = (torch.arange(1, codes + 1, dtype=torch.float64) + beta) ** -alpha
    return (weights / weights.sum()).float()


def perplexity(counts: torch.Tensor) -> float:
    """exp(entropy) of a code histogram: how many codes are in effective use."""
    p = counts.double()[counts > 0] / counts.sum()
    return float(torch.exp(-(p * p.log()).sum()))


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    mid = 0.5 * (p + q)
    log_mid = mid.clamp_min(LOG_FLOOR).log()
    kl_p = (p * (p.clamp_min(LOG_FLOOR).log() - log_mid)).sum()
    kl_q = (q * (q.clamp_min(LOG_FLOOR).log() - log_mid)).sum()
    return 0.5 * (kl_p + kl_q)


def zipf_loss(usage: torch.Tensor, zipf: torch.Tensor) -> torch.Tensor:
    """Eq. 4: JS(sort(sum_b t^b) / (B W) || D_Zipf)."""
    total = usage.sum(0)
    frequency = torch.sort(total, descending=True).values / total.sum().detach()
    return js_divergence(frequency, zipf)


def context_loss(usage: torch.Tensor) -> torch.Tensor:
    """Eq. 5: 1 - sum_b Corr(t^b) / (B W) with Corr by min-pooling over (u, u + U/2)."""
    half = usage.shape[-1] // 2
    paired = 2.0 * torch.minimum(usage[:, :half], usage[:, half:]).sum()
    return 1.0 - paired / usage.sum().detach()


def kernel_mean(a: torch.Tensor, b: torch.Tensor, bandwidth: torch.Tensor) -> torch.Tensor:
    """Mean of the Gaussian-mixture kernel over all pairs of rows of ``a`` and ``b``."""
    sq = ((a * a).sum(-1, keepdim=True) + (b * b).sum(-1) - 2.0 * a @ b.T).clamp_min(0.0)
    return sum(torch.exp(-sq / (m * bandwidth)).mean() for m in KERNEL_SCALES) / len(KERNEL_SCALES)


def median_sq_distance(rows: torch.Tensor) -> torch.Tensor:
    sq = torch.cdist(rows, rows).square()
    return sq[~torch.eye(len(rows), dtype=torch.bool, device=rows.device)].median().clamp_min(1e-12)


def mmd2(
    x: torch.Tensor,
    y: torch.Tensor,
    bandwidth: torch.Tensor,
    y_kernel_mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """Biased squared MMD (Eq. 7's alignment term) between row sets ``x`` and ``y``;
    ``y_kernel_mean`` is kernel_mean(y, y), passed when ``y`` is fixed and it is precomputed."""
    if y_kernel_mean is None:
        y_kernel_mean = kernel_mean(y, y, bandwidth)
    return kernel_mean(x, x, bandwidth) + y_kernel_mean - 2.0 * kernel_mean(x, y, bandwidth)


class VQVAELoss(nn.Module):
    """Eq. 12 for one batch; holds the Zipf target and the sampled LLM embedding rows."""

    def __init__(self, cfg: LossConfig, codes: int, llm_rows: torch.Tensor):
        super().__init__()
        self.cfg = cfg.validate()
        llm_rows = llm_rows.float()
        bandwidth = median_sq_distance(llm_rows)
        self.register_buffer(
            "zipf", zipf_distribution(codes, cfg.zipf_alpha, cfg.zipf_beta), persistent=False
        )
        self.register_buffer("llm_rows", llm_rows, persistent=False)
        self.register_buffer("bandwidth", bandwidth, persistent=False)
        self.register_buffer(
            "llm_kernel_mean", kernel_mean(llm_rows, llm_rows, bandwidth), persistent=False
        )

    def alignment(self, tangent_codes: torch.Tensor) -> torch.Tensor:
        return mmd2(tangent_codes.float(), self.llm_rows, self.bandwidth, self.llm_kernel_mean)

    def forward(self, out: VQVAEOutput, codebook: Codebook) -> tuple[torch.Tensor, dict]:
        """Total loss (Eq. 12) and its detached parts; all in float32 outside autocast."""
        cfg = self.cfg
        with torch.autocast(out.features.device.type, enabled=False):
            features = out.features.float()
            parts = {
                "rec": F.smooth_l1_loss(out.recon.float(), out.target.float()),
                "embed": squared_norm(out.quantized.float() - features.detach()),
                "commit": squared_norm(features - out.quantized.float().detach()),
            }
            usage = token_usage(out.neg_distances.float(), cfg.gumbel_tau)
            human = {
                "zipf": zipf_loss(usage, self.zipf),
                "context": context_loss(usage),
                "mmd": self.alignment(codebook.tangent_codes()),
            }
            enabled = {"zipf": cfg.zipf, "context": cfg.context, "mmd": cfg.mmd}
            bias = sum(
                (v for k, v in human.items() if enabled[k]), torch.zeros((), device=features.device)
            )
            total = parts["rec"] + parts["embed"] + cfg.omega1 * parts["commit"] + cfg.omega2 * bias
        return total, {k: v.detach() for k, v in {**parts, **human}.items()}
