"""ST-GCN (Yan et al., AAAI 2018): spatial graph convolution over a fixed, partitioned
adjacency with learnable edge importance, then a 9-step temporal convolution; GAP's second
backbone (its supplementary ablation).

Same interface and channel plan as :mod:`actionlm.models.ctrgcn` (ten blocks, widths c..4c,
temporal stride 2 entering 2c and 4c), so the heads and training code take either.
"""

from __future__ import annotations

import torch
from torch import nn

from actionlm.models.ctrgcn import GCNBlock, block_plan, run_blocks


class SpatialGCN(nn.Module):
    """Eq. 10 of ST-GCN: sum over partition subsets k of (A_k * M_k) x W_k."""

    def __init__(self, in_channels: int, out_channels: int, adjacency: torch.Tensor):
        super().__init__()
        self.register_buffer("adjacency", adjacency.clone())
        self.importance = nn.Parameter(torch.ones_like(adjacency))
        self.conv = nn.Conv2d(in_channels, out_channels * len(adjacency), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, v = x.shape
        y = self.conv(x).view(n, len(self.adjacency), -1, t, v)
        return torch.einsum("nkctv,kvw->nctw", y, self.adjacency * self.importance)


class STGCNBlock(GCNBlock):
    def __init__(self, in_channels: int, out_channels: int, adjacency: torch.Tensor,
                 stride: int = 1, residual: bool = True, kernel: int = 9, dropout: float = 0.0):
        tcn = nn.Sequential(
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, (kernel, 1), (stride, 1),
                      ((kernel - 1) // 2, 0)),
            nn.BatchNorm2d(out_channels), nn.Dropout(dropout, inplace=True),
        )
        super().__init__(
            SpatialGCN(in_channels, out_channels, adjacency), tcn, in_channels, out_channels,
            stride, residual,
            lambda: nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, (stride, 1)),
                                  nn.BatchNorm2d(out_channels)),
        )


class STGCN(nn.Module):
    def __init__(self, adjacency: torch.Tensor, bodies: int, base_channels: int = 64,
                 in_channels: int = 3, keep_time: bool = False):
        """``keep_time`` is accepted for parity with CTR-GCN: ST-GCN has no pooling over time
        inside its blocks, so its SUGAR variant is the same network."""
        super().__init__()
        joints = adjacency.shape[-1]
        self.data_bn = nn.BatchNorm1d(bodies * joints * in_channels)
        blocks = [STGCNBlock(in_channels, base_channels, adjacency, residual=False)]
        blocks += [STGCNBlock(i, o, adjacency, s) for i, o, s in block_plan(base_channels)]
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = 4 * base_channels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, T, M, V, C] joints -> [N, M, C', T / 4, V]."""
        return run_blocks(self.data_bn, self.blocks, x)
