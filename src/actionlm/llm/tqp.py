"""SUGAR's bridge from skeleton-encoder features to LLM input tokens: Temporal Query Projection
(SUGAR Step 3, Eq. 4, Fig. 3) and the three bridges it is compared with in SUGAR Table 4 (one
linear layer, one Q-Former, cross-attention).

All bridges map features [B, n_steps, width] to tokens [B, n_tokens, hidden] (hidden = the
LLM's embedding width). The Q-Former is BLIP-2's querying transformer reduced to what the
projection needs: learnable queries that attend to themselves, then to the features, then go
through a feed-forward layer (pre-norm residual blocks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from actionlm.errors import ActionlmError

BRIDGES = ("tqp", "linear", "qformer", "cross_attention")


@dataclass(frozen=True)
class BridgeConfig:
    """``queries`` = L, the number of LLM tokens a query-based bridge emits (SUGAR: 128);
    ``segments`` = the temporal segments TQP walks through; ``depth``/``heads`` size the
    Q-Former (which works at the feature width)."""

    kind: str = "tqp"
    queries: int = 128
    segments: int = 4
    depth: int = 1
    heads: int = 4
    dropout: float = 0.0

    def validate(self, width: int, n_steps: int, source: str) -> BridgeConfig:
        """Refuse features that this bridge cannot take (``source`` names their file)."""
        if self.kind not in BRIDGES:
            raise ActionlmError(f"bridge {self.kind!r}: expected one of {', '.join(BRIDGES)}")
        if min(self.queries, self.segments, self.depth, self.heads) < 1:
            raise ActionlmError(f"bridge config {asdict(self)}: sizes must be >= 1")
        if self.kind != "linear" and width % self.heads:
            raise ActionlmError(
                f"{source}: feature width {width} does not fit the {self.kind} projector "
                f"({self.heads} attention heads must divide it; change --heads)"
            )
        if self.kind == "tqp" and n_steps < self.segments:
            raise ActionlmError(
                f"{source}: {n_steps} time steps cannot be cut into {self.segments} TQP "
                "segments (lower --segments)"
            )
        return self


class QFormerBlock(nn.Module):
    """Queries: self-attention, cross-attention to the features, feed-forward (pre-norm
    residuals); ``full=False`` keeps the cross-attention alone."""

    def __init__(self, width: int, heads: int, dropout: float, full: bool = True):
        super().__init__()
        self.full = full
        self.cross_norm = nn.LayerNorm(width)
        self.memory_norm = nn.LayerNorm(width)
        self.cross_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        if full:
            self.self_norm = nn.LayerNorm(width)
            self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout,
                                                   batch_first=True)
            self.ffn = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 4 * width),
                                     nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * width, width))

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        if self.full:
            q = self.self_norm(queries)
            queries = queries + self.self_attn(q, q, q, need_weights=False)[0]
        m = self.memory_norm(memory)
        queries = queries + self.cross_attn(self.cross_norm(queries), m, m, need_weights=False)[0]
        return queries + self.ffn(queries) if self.full else queries


class QFormer(nn.Module):
    """f_Q: a stack of Q-Former blocks: (queries [B, L, d], features [B, T, d]) -> [B, L, d]."""

    def __init__(self, width: int, heads: int, depth: int, dropout: float, full: bool = True):
        super().__init__()
        self.blocks = nn.ModuleList(QFormerBlock(width, heads, dropout, full)
                                    for _ in range(depth))

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            queries = block(queries, memory)
        return queries


class QueryBridge(nn.Module):
    """Learnable queries q [L, d] read the features through one f_Q, then a linear layer maps
    them to the LLM width. With ``segments`` > 1 this is TQP (Eq. 4): the features are cut
    into consecutive temporal segments and f_Q (weights shared) runs once per segment, each
    segment's output being the next segment's query, so the L tokens carry the whole sequence
    in order. ``segments`` = 1 is the "one Q-Former" ablation; with cross-attention alone
    (``full=False``: no self-attention, no feed-forward) it is the cross-attention ablation."""

    def __init__(self, width: int, hidden: int, cfg: BridgeConfig, segments: int,
                 full: bool = True):
        super().__init__()
        self.segments = segments
        self.queries = nn.Parameter(torch.randn(cfg.queries, width) * width**-0.5)
        self.qformer = QFormer(width, cfg.heads, cfg.depth, cfg.dropout, full)
        self.out = nn.Linear(width, hidden)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        queries = self.queries.expand(len(features), -1, -1)
        for segment in torch.tensor_split(features, self.segments, dim=1):
            queries = self.qformer(queries, segment)
        return self.out(queries)


class LinearBridge(nn.Module):
    """One linear layer per time step: n_steps LLM tokens (SUGAR Table 4, "one linear layer")."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.out = nn.Linear(width, hidden)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(features)


def build_bridge(cfg: BridgeConfig, width: int, hidden: int) -> nn.Module:
    """The bridge named by ``cfg.kind`` for features of ``width`` channels."""
    if cfg.kind == "linear":
        return LinearBridge(width, hidden)
    if cfg.kind == "cross_attention":
        return QueryBridge(width, hidden, cfg, segments=1, full=False)
    return QueryBridge(width, hidden, cfg, segments=cfg.segments if cfg.kind == "tqp" else 1)


def bridge_tokens(cfg: BridgeConfig, n_steps: int) -> int:
    """How many LLM tokens the bridge emits for ``n_steps`` feature steps."""
    return n_steps if cfg.kind == "linear" else cfg.queries
