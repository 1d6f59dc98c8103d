"""Skeleton graphs for the GCN encoders, built from a skeleton layout's bones.

The adjacency has three subsets (ST-GCN's spatial partitioning, as CTR-GCN uses it): the
joint itself, edges towards the body's centre (child -> parent, "inward") and away from it
("outward"). Directed subsets are normalised by in-degree, A D^-1 (ST-GCN Eq. 3), so a joint
averages its neighbours rather than summing them.
"""

from __future__ import annotations

import torch

from actionlm.data.skeleton_layouts import SkeletonLayout


def edge_matrix(edges: list[tuple[int, int]], n: int) -> torch.Tensor:
    """A[j, i] = 1 for an edge i -> j (column i sends to row j)."""
    matrix = torch.zeros(n, n)
    for source, target in edges:
        matrix[target, source] = 1.0
    return matrix


def normalize_columns(matrix: torch.Tensor) -> torch.Tensor:
    degree = matrix.sum(dim=0)
    return matrix / torch.where(degree > 0, degree, torch.ones_like(degree))


def spatial_adjacency(layout: SkeletonLayout) -> torch.Tensor:
    """[3, V, V]: identity, normalised inward edges, normalised outward edges."""
    n = layout.n_joints
    inward = list(layout.bones)
    outward = [(parent, child) for child, parent in inward]
    return torch.stack(
        [torch.eye(n), normalize_columns(edge_matrix(inward, n)),
         normalize_columns(edge_matrix(outward, n))]
    )
