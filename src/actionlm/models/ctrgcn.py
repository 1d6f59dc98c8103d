"""CTR-GCN (Chen et al., ICCV 2021): channel-wise topology refinement graph convolution and
multi-scale temporal convolution; GAP's skeleton encoder and SUGAR's (with ``keep_time``).

Ten blocks, widths c, c, c, c, 2c, 2c, 2c, 4c, 4c, 4c with temporal stride 2 entering 2c and
4c (c = ``base_channels``, 64 in the paper). Input [N, T, M, V, 3]; ``features`` returns the
last block's output [N, M, C, T / 4, V], which the heads pool (globally for classification,
over joint groups for GAP's parts, over joints only for SUGAR's per-step features).

``keep_time`` is SUGAR's variant (Sec. "Skeleton Encoder"): the max-pooling branch of the
multi-scale temporal module is dropped, so no block pools over time and each output step
keeps its own frames' detail.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def conv_init(conv: nn.Conv2d) -> None:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def bn_init(bn: nn.BatchNorm2d, scale: float) -> None:
    nn.init.constant_(bn.weight, scale)
    nn.init.zeros_(bn.bias)


class ChannelTopologyGC(nn.Module):
    """CTR-GC (Eqs. 3-6): per channel group a refined topology
    A + alpha * Q(tanh(phi(x)_u - psi(x)_v)), then aggregation of xi(x) along it."""

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 8):
        super().__init__()
        rel = 8 if in_channels <= 9 else in_channels // reduction
        self.phi = nn.Conv2d(in_channels, rel, 1)
        self.psi = nn.Conv2d(in_channels, rel, 1)
        self.xi = nn.Conv2d(in_channels, out_channels, 1)
        self.refine = nn.Conv2d(rel, out_channels, 1)
        for conv in (self.phi, self.psi, self.xi, self.refine):
            conv_init(conv)

    def forward(self, x: torch.Tensor, shared: torch.Tensor, alpha: torch.Tensor,
                time_mean: torch.Tensor) -> torch.Tensor:
        """x [N, C, T, V] and its temporal mean [N, C, 1, V]: phi and psi are pointwise linear
        maps, so the temporal mean of their outputs (one topology per sample and channel) is
        their output on the mean, T times cheaper to compute."""
        u = self.phi(time_mean).squeeze(2)
        v = self.psi(time_mean).squeeze(2)
        relation = torch.tanh(u.unsqueeze(-1) - v.unsqueeze(-2))  # [N, R, V, V]
        topology = self.refine(relation) * alpha + shared  # [N, C', V, V]
        return torch.einsum("ncuv,nctv->nctu", topology, self.xi(x))


class TopologyGCN(nn.Module):
    """Sum of one CTR-GC per adjacency subset, batch norm, residual, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, adjacency: torch.Tensor,
                 residual: bool = True):
        super().__init__()
        self.convs = nn.ModuleList(
            ChannelTopologyGC(in_channels, out_channels) for _ in range(len(adjacency))
        )
        self.adjacency = nn.Parameter(adjacency.clone())  # learnable shared topology
        self.alpha = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm2d(out_channels)
        bn_init(self.bn, 1e-6)
        if not residual:
            self.down = None
        elif in_channels == out_channels:
            self.down = nn.Identity()
        else:
            self.down = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1),
                                      nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time_mean = x.mean(dim=2, keepdim=True)
        y = sum(conv(x, self.adjacency[i], self.alpha, time_mean)
                for i, conv in enumerate(self.convs))
        y = self.bn(y)
        if self.down is not None:
            y = y + self.down(x)
        return self.relu(y)


class TemporalConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 dilation: int = 1):
        super().__init__()
        pad = (kernel + (kernel - 1) * (dilation - 1) - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, (kernel, 1), (stride, 1), (pad, 0),
                              (dilation, 1))
        self.bn = nn.BatchNorm2d(out_channels)
        conv_init(self.conv)
        bn_init(self.bn, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class MultiScaleTemporalConv(nn.Module):
    """Parallel branches over time: dilated convolutions (one per dilation), a 3-step max
    pool (left out when ``keep_time``) and a strided 1x1, each on a share of the channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel: int = 5,
                 dilations: tuple[int, ...] = (1, 2), keep_time: bool = False):
        super().__init__()
        n_branches = len(dilations) + (1 if keep_time else 2)
        width = out_channels // n_branches
        first = out_channels - width * (n_branches - 1)  # absorbs the remainder

        def squeeze(channels: int) -> list[nn.Module]:
            conv = nn.Conv2d(in_channels, channels, 1)
            conv_init(conv)
            bn = nn.BatchNorm2d(channels)
            bn_init(bn, 1)
            return [conv, bn]

        widths = [first] + [width] * (n_branches - 1)
        branches = [
            nn.Sequential(*squeeze(w), nn.ReLU(inplace=True),
                          TemporalConv(w, w, kernel, stride, dilation))
            for w, dilation in zip(widths, dilations)
        ]
        if not keep_time:
            pool_width = widths[len(dilations)]
            bn = nn.BatchNorm2d(pool_width)
            bn_init(bn, 1)
            branches.append(nn.Sequential(
                *squeeze(pool_width), nn.ReLU(inplace=True),
                nn.MaxPool2d((3, 1), (stride, 1), (1, 0)), bn))
        last = nn.Conv2d(in_channels, widths[-1], 1, (stride, 1))
        conv_init(last)
        bn = nn.BatchNorm2d(widths[-1])
        bn_init(bn, 1)
        branches.append(nn.Sequential(last, bn))
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class GCNBlock(nn.Module):
    """One block of either backbone: spatial graph convolution, temporal convolution, a
    residual path (identity when the shape is kept, else ``projection()``), ReLU."""

    def __init__(self, gcn: nn.Module, tcn: nn.Module, in_channels: int, out_channels: int,
                 stride: int, residual: bool, projection: Callable[[], nn.Module]):
        super().__init__()
        self.gcn, self.tcn = gcn, tcn
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = projection()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn(self.gcn(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


class CTRGCNBlock(GCNBlock):
    def __init__(self, in_channels: int, out_channels: int, adjacency: torch.Tensor,
                 stride: int = 1, residual: bool = True, keep_time: bool = False):
        super().__init__(
            TopologyGCN(in_channels, out_channels, adjacency),
            MultiScaleTemporalConv(out_channels, out_channels, stride, keep_time=keep_time),
            in_channels, out_channels, stride, residual,
            lambda: TemporalConv(in_channels, out_channels, 1, stride),
        )


def block_plan(base: int) -> list[tuple[int, int, int]]:
    """(in, out, stride) of the ten blocks after the first."""
    widths = [base] * 4 + [2 * base] * 3 + [4 * base] * 3
    return [(widths[i - 1], widths[i], 2 if widths[i] != widths[i - 1] else 1)
            for i in range(1, len(widths))]


class CTRGCN(nn.Module):
    def __init__(self, adjacency: torch.Tensor, bodies: int, base_channels: int = 64,
                 in_channels: int = 3, keep_time: bool = False):
        super().__init__()
        joints = adjacency.shape[-1]
        self.data_bn = nn.BatchNorm1d(bodies * joints * in_channels)
        bn_init(self.data_bn, 1)
        blocks = [CTRGCNBlock(in_channels, base_channels, adjacency, residual=False,
                              keep_time=keep_time)]
        blocks += [CTRGCNBlock(i, o, adjacency, s, keep_time=keep_time)
                   for i, o, s in block_plan(base_channels)]
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = 4 * base_channels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, T, M, V, C] joints -> [N, M, C', T / 4, V]."""
        return run_blocks(self.data_bn, self.blocks, x)


def run_blocks(data_bn: nn.BatchNorm1d, blocks: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Batch-normalise every (body, joint, coordinate) channel over time, then run the blocks
    on each body separately: [N, T, M, V, C] -> [N, M, C', T', V]."""
    n, t, m, v, c = x.shape
    x = x.permute(0, 2, 3, 4, 1).reshape(n, m * v * c, t)
    x = data_bn(x).view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
    y = blocks(x)
    return y.view(n, m, *y.shape[1:])
