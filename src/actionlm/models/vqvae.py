"""LLM-AR's action-based VQ-VAE with a hyperbolic codebook (Qu et al., CVPR 2024, Sec. 3.1).

A skeleton sequence of V frames (joints of up to two bodies flattened per frame) goes through
a 1-D temporal conv encoder to W = V/4 latent vectors of the LLM's input-embedding width d_u.
Each latent is mapped into the Poincaré ball by the exp map at the origin (Eq. 8), replaced by
the code of least geodesic distance (Eqs. 1, 9), mapped back by the log map (Eq. 10) and
decoded. The code indices are the "action sentence".

Choices where the paper (whose supplementary is not public) is silent:

- Architecture: the motion VQ-VAE layout the paper cites (T2M-GPT style): conv in, two
  stride-2 conv stages each followed by ``depth`` dilated residual blocks (dilations 1, 3, 9,
  ...), conv out to d_u; the decoder mirrors it with nearest-neighbour upsampling.
- Input normalisation: per-channel mean and one global standard deviation of the training
  data in the skeleton stream the model reads (``modality``: joint, bone, joint_motion,
  bone_motion; actionlm.data.streams), stored in the model; one scale keeps the body's
  proportions and does not blow up near-constant channels (a centred root joint, an absent
  second body).
- Codebook initialisation: exp maps of U latents drawn at random from the (untrained)
  encoder's output on training samples. Starting from LLM embedding rows instead leaves most
  codes unreachable (the few codes nearest the origin win every latent, the hyperbolic "hub"
  effect) and the reconstruction does not improve; the MMD term (Eq. 7) moves the codes
  towards the LLM rows during training. Index u and u + U/2 form a context pair (Eq. 5); with
  random initial codes the index split is the paper's random split.
- Latent clipping: latents are scaled down to the largest norm whose exp map float32 can still
  hold inside the ball (atanh(1 - 4e-3) / sqrt(c)); beyond it the exp map saturates and
  nothing bounds |f - f^d|. The Euclidean ablation clips at the same norm, so that the two
  codebooks differ only in geometry.
- Curvature and the LLM's scale: the codes' Euclidean images are pulled towards the LLM's
  embedding rows (norm rho), so sqrt(c) rho should be about 1: c = 1 suits LLaMA (rho ~ 1);
  SmolLM2's rows have rho ~ 3.2, for which c = 0.1 works (with c = 1 the latents sit at the
  ball's edge, where a few codes win everything).
- Straight-through estimator in the Euclidean space: the decoder sees f + sg(f^d - f).
- Dead codes: every ``reset_every`` training steps, codes that no latent chose since the last
  reset are moved onto the ball images of randomly drawn latents of the current batch (as in
  Jukebox / T2M-GPT). Optimiser moments of those rows are kept: they decay within a few steps.
- Distances are computed in float32 outside autocast: the geodesic distance near the ball's
  boundary is meaningless in bfloat16.
- ``codebook="euclidean"`` is the paper's "w/o C_H" ablation (Table 6): same network and
  optimiser, codes in R^d_u and Euclidean distance.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

import geoopt
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from actionlm.data.streams import MODALITIES
from actionlm.errors import ActionlmError
from actionlm.io import atomic_path

CODEBOOKS = ("hyperbolic", "euclidean")
MAX_CODES = 32767  # tokens are stored as int16
BALL_MARGIN = 4e-3  # geoopt's float32 projection margin: points stay within (1 - 4e-3)/sqrt(c)


@dataclass(frozen=True)
class VQVAEConfig:
    """Everything that fixes the network's shape; saved inside the weights file."""

    width: int  # d_u: the LLM's input-embedding width
    joints: int = 25
    bodies: int = 2
    window: int = 64  # V; the action sentence has W = V / 4 tokens
    codes: int = 512  # U
    codebook: str = "hyperbolic"
    curvature: float = 1.0  # c of the Poincaré ball
    channels: int = 64
    depth: int = 2
    modality: str = "joint"  # the skeleton stream it reads; older files (no key) read joints

    @property
    def in_features(self) -> int:
        return self.bodies * self.joints * 3

    @property
    def tokens(self) -> int:
        return self.window // 4

    def validate(self) -> VQVAEConfig:
        problems = []
        if self.codes < 2 or self.codes % 2 or self.codes > MAX_CODES:
            problems.append(
                f"codes (U) must be an even number in [2, {MAX_CODES}], got {self.codes}"
            )
        if self.codebook not in CODEBOOKS:
            problems.append(f"codebook must be one of {CODEBOOKS}, got {self.codebook!r}")
        if not self.curvature > 0:
            problems.append(f"curvature c must be > 0, got {self.curvature}")
        if self.window < 4 or self.window % 4:
            problems.append(
                f"window (V) must be a positive multiple of 4 (W = V/4), got {self.window}"
            )
        for key in ("width", "joints", "bodies", "channels"):
            if getattr(self, key) < 1:
                problems.append(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.depth < 0:
            problems.append(f"depth must be >= 0, got {self.depth}")
        if self.modality not in MODALITIES:
            problems.append(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        if problems:
            raise ActionlmError("VQ-VAE config: " + "; ".join(problems))
        return self


def pairwise_poincare_distance(
    x: torch.Tensor, codes: torch.Tensor, curvature: float
) -> torch.Tensor:
    """Geodesic distance (Eq. 9, for curvature c) between each row of ``x`` [N, d] and each
    code [U, d], as [N, U]: acosh(1 + 2c|x-y|^2 / ((1-c|x|^2)(1-c|y|^2))) / sqrt(c).
    |x-y|^2 comes from one matrix product, so memory is O(N U), not O(N U d)."""
    x_sq = (x * x).sum(-1, keepdim=True)
    code_sq = (codes * codes).sum(-1)
    diff_sq = (x_sq + code_sq - 2.0 * x @ codes.T).clamp_min(0.0)
    denominator = ((1.0 - curvature * x_sq) * (1.0 - curvature * code_sq)).clamp_min(1e-12)
    argument = (1.0 + 2.0 * curvature * diff_sq / denominator).clamp_min(1.0 + 1e-6)
    return torch.acosh(argument) / math.sqrt(curvature)


def pairwise_euclidean_distance(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    diff_sq = (x * x).sum(-1, keepdim=True) + (codes * codes).sum(-1) - 2.0 * x @ codes.T
    return diff_sq.clamp_min(1e-12).sqrt()


class Codebook(nn.Module):
    """U codes on the Poincaré ball (a geoopt ManifoldParameter, stepped by Riemannian Adam)
    or, for the ablation, in Euclidean space."""

    def __init__(self, codes: int, width: int, kind: str, curvature: float):
        super().__init__()
        self.hyperbolic = kind == "hyperbolic"
        self.curvature = curvature
        if self.hyperbolic:
            self.ball = geoopt.PoincareBall(c=curvature)
            self.weight = geoopt.ManifoldParameter(torch.zeros(codes, width), manifold=self.ball)
        else:
            self.weight = nn.Parameter(torch.zeros(codes, width))
        self.register_buffer("usage_since_reset", torch.zeros(codes))

    def clip(self, f: torch.Tensor) -> torch.Tensor:
        """Scale latents down to the largest norm whose exp map float32 can still represent
        inside the ball (geoopt keeps points 4e-3 from the boundary), for both codebooks."""
        limit = math.atanh(1.0 - BALL_MARGIN) / math.sqrt(self.curvature)
        return f * (limit / f.norm(dim=-1, keepdim=True).clamp_min(limit))

    def to_space(self, f: torch.Tensor) -> torch.Tensor:
        """Euclidean latents -> the codebook's space: exp map at the origin (Eq. 8)."""
        return self.ball.expmap0(f) if self.hyperbolic else f

    def to_euclidean(self, points: torch.Tensor) -> torch.Tensor:
        """Codebook space -> Euclidean: log map at the origin (Eq. 10)."""
        return self.ball.logmap0(points) if self.hyperbolic else points

    def distances(self, points: torch.Tensor) -> torch.Tensor:
        if self.hyperbolic:
            return pairwise_poincare_distance(points, self.weight, self.curvature)
        return pairwise_euclidean_distance(points, self.weight)

    def tangent_codes(self) -> torch.Tensor:
        """The codes as Euclidean vectors: what the decoder (and the LLM) receives."""
        return self.to_euclidean(self.weight)

    @torch.no_grad()
    def set_codes(self, vectors: torch.Tensor) -> None:
        """Place the codes at the codebook-space images of Euclidean ``vectors`` [U, d]."""
        self.weight.copy_(self.to_space(vectors.to(self.weight)))

    @torch.no_grad()
    def reset_dead_codes(self, points: torch.Tensor) -> int:
        """Move codes unused since the last reset onto random rows of ``points`` (latents in
        codebook space, [N, d]); return how many moved."""
        dead = torch.nonzero(self.usage_since_reset == 0).flatten()
        if len(dead):
            pick = torch.randint(len(points), (len(dead),), device="cpu").to(points.device)
            self.weight[dead] = points[pick].to(self.weight)
        self.usage_since_reset.zero_()
        return len(dead)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def build_encoder(cfg: VQVAEConfig) -> nn.Sequential:
    """[B, in_features, V] -> [B, width, V/4]: two stride-2 stages."""
    c = cfg.channels
    layers: list[nn.Module] = [nn.Conv1d(cfg.in_features, c, 3, padding=1), nn.ReLU()]
    for _ in range(2):
        layers.append(nn.Conv1d(c, c, 4, stride=2, padding=1))
        layers += [ResidualBlock(c, 3**i) for i in range(cfg.depth)]
    layers.append(nn.Conv1d(c, cfg.width, 3, padding=1))
    return nn.Sequential(*layers)


def build_decoder(cfg: VQVAEConfig) -> nn.Sequential:
    """[B, width, V/4] -> [B, in_features, V]: the encoder mirrored."""
    c = cfg.channels
    layers: list[nn.Module] = [nn.Conv1d(cfg.width, c, 3, padding=1), nn.ReLU()]
    for _ in range(2):
        layers += [ResidualBlock(c, 3**i) for i in reversed(range(cfg.depth))]
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv1d(c, c, 3, padding=1)]
    layers += [nn.ReLU(), nn.Conv1d(c, cfg.in_features, 3, padding=1)]
    return nn.Sequential(*layers)


@dataclass
class VQVAEOutput:
    target: torch.Tensor  # normalised input [B, V, in_features]
    recon: torch.Tensor  # its reconstruction
    features: torch.Tensor  # encoder latents f [B, W, d_u] (Euclidean)
    quantized: torch.Tensor  # f^d = log map of the chosen codes [B, W, d_u]
    points: torch.Tensor  # latents in codebook space (exp map of f) [B, W, d_u]
    codes: torch.Tensor  # chosen code indices [B, W]: the action sentence
    neg_distances: torch.Tensor  # -dist(f_w, c_u) [B, W, U]: logits of the token usage (Eq. 3)


class ActionVQVAE(nn.Module):
    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.encoder = build_encoder(cfg)
        self.decoder = build_decoder(cfg)
        self.codebook = Codebook(cfg.codes, cfg.width, cfg.codebook, cfg.curvature)
        self.register_buffer("mean", torch.zeros(cfg.in_features))
        self.register_buffer("scale", torch.ones(()))

    @torch.no_grad()
    def set_normalization(self, joints: torch.Tensor) -> None:
        """Per-channel mean, one global standard deviation, from training clips [N, V, ...]
        of the model's stream."""
        flat = joints.reshape(-1, self.cfg.in_features).to(self.mean)
        self.mean.copy_(flat.mean(0))
        self.scale.copy_((flat - self.mean).std().clamp_min(1e-6))

    @torch.no_grad()
    def init_codebook(self, joints: torch.Tensor) -> None:
        """Codes = the codebook-space images of U latents drawn at random from the encoding
        of ``joints`` (raw training samples): every code starts where data lands."""
        latents = self.codebook.clip(self.encode(self.normalize(joints)).float()).flatten(0, 1)
        pick = torch.randint(len(latents), (self.cfg.codes,), device="cpu").to(latents.device)
        self.codebook.set_codes(latents[pick])

    def normalize(self, joints: torch.Tensor) -> torch.Tensor:
        flat = joints.reshape(*joints.shape[:2], self.cfg.in_features)
        if flat.shape[1] != self.cfg.window:
            raise ActionlmError(f"VQ-VAE expects {self.cfg.window} frames, got {flat.shape[1]}")
        return (flat - self.mean) / self.scale

    def encode(self, target: torch.Tensor) -> torch.Tensor:
        return self.encoder(target.transpose(1, 2)).transpose(1, 2)

    def quantize(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Nearest code by geodesic distance (Eq. 1, 9) in float32; returns
        (points, codes, quantized, neg_distances)."""
        with torch.autocast(features.device.type, enabled=False):
            flat = features.float().reshape(-1, self.cfg.width)
            points = self.codebook.to_space(flat)
            distances = self.codebook.distances(points)
            codes = distances.argmin(-1)
            quantized = self.codebook.to_euclidean(self.codebook.weight[codes])
        shape = features.shape[:2]
        return (
            points.reshape(features.shape),
            codes.reshape(shape),
            quantized.reshape(features.shape),
            -distances.reshape(*shape, -1),
        )

    def forward(self, joints: torch.Tensor) -> VQVAEOutput:
        target = self.normalize(joints)
        features = self.codebook.clip(self.encode(target).float())
        points, codes, quantized, neg_distances = self.quantize(features)
        if self.training:
            self.codebook.usage_since_reset += torch.bincount(
                codes.flatten(), minlength=self.cfg.codes
            ).to(self.codebook.usage_since_reset)
        straight_through = features + (quantized - features).detach()
        recon = self.decoder(straight_through.transpose(1, 2)).transpose(1, 2)
        return VQVAEOutput(target, recon, features, quantized, points, codes, neg_distances)

    @torch.no_grad()
    def tokenize(self, joints: torch.Tensor) -> torch.Tensor:
        """Clips [B, V, bodies, joints, 3] of the model's stream (not normalised) -> action
        sentences [B, W] of code indices."""
        return self.quantize(self.codebook.clip(self.encode(self.normalize(joints)).float()))[1]


def save_vqvae(model: ActionVQVAE, path: str | os.PathLike) -> None:
    """Weights as safetensors, with the VQVAEConfig in the file's metadata (self-contained)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"vqvae_config": json.dumps(asdict(model.cfg))})


def load_vqvae(path: str | os.PathLike, device: torch.device | str = "cpu") -> ActionVQVAE:
    try:
        with safe_open(str(path), "pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, RuntimeError) as err:
        raise ActionlmError(f"{path}: cannot read VQ-VAE weights ({err})") from None
    if "vqvae_config" not in meta:
        raise ActionlmError(f"{path}: not an actionlm VQ-VAE file (no vqvae_config metadata)")
    model = ActionVQVAE(VQVAEConfig(**json.loads(meta["vqvae_config"])))
    model.load_state_dict(state)
    return model.to(device).eval()
