"""The contrastive model: a query encoder with a projection head, its momentum copy, one key queue per level.

As in MoCo (He et al. 2020), keys come from a momentum encoder and wait in a queue, so the
negatives of a step are many and consistent without a huge batch. CoMCL keeps one queue per level
(L, L~, H, H~, or whatever groups a configuration names), so that a pair (m, n) draws its negatives
from level n only. Queues, their write positions and how full they are are buffers: they are saved
in checkpoints, and a resumed run continues with the same negatives.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


def backbone(arch: str) -> tuple[nn.Module, int]:
    """A torchvision ResNet without its classifier (``fc`` is the identity), and its feature width."""
    if not arch.startswith("resnet") or not hasattr(torchvision.models, arch):
        raise ValueError(f"unknown backbone {arch!r}: use a torchvision ResNet (resnet18, resnet34, resnet50, ...)")
    network = getattr(torchvision.models, arch)(weights=None)
    width = network.fc.in_features
    network.fc = nn.Identity()
    return network, width


def projection_head(width: int, hidden: int, dim: int) -> nn.Module:
    """The MLP that maps features to the embedding the loss compares (paper: 2048 -> 2048 -> 128)."""
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))


class ContrastiveModel(nn.Module):
    """Query and momentum key encoders (backbone + head) and ``len(levels)`` queues of ``queue_size`` keys."""

    def __init__(self, arch: str, levels: Sequence[str], queue_size: int, dim: int = 128, hidden: int | None = None, momentum: float = 0.999):
        super().__init__()
        self.levels = list(levels)
        self.momentum = momentum
        self.backbone_q, width = backbone(arch)
        self.head_q = projection_head(width, hidden or width, dim)
        self.backbone_k, _ = backbone(arch)
        self.head_k = projection_head(width, hidden or width, dim)
        for query, key in zip(self._query_parameters(), self._key_parameters(), strict=True):
            key.data.copy_(query.data)
            key.requires_grad = False
        self.register_buffer("queues", torch.zeros(len(self.levels), queue_size, dim))
        self.register_buffer("pointers", torch.zeros(len(self.levels), dtype=torch.long))
        self.register_buffer("filled", torch.zeros(len(self.levels), dtype=torch.long))

    def _query_parameters(self) -> list[nn.Parameter]:
        return [*self.backbone_q.parameters(), *self.head_q.parameters()]

    def _key_parameters(self) -> list[nn.Parameter]:
        return [*self.backbone_k.parameters(), *self.head_k.parameters()]

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings of the query encoder (gradients flow)."""
        return F.normalize(self.head_q(self.backbone_q(images)).float(), dim=1)

    @torch.no_grad()
    def key(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings of the momentum encoder (no gradients)."""
        return F.normalize(self.head_k(self.backbone_k(images)).float(), dim=1)

    @torch.no_grad()
    def momentum_update(self) -> None:
        for query, key in zip(self._query_parameters(), self._key_parameters(), strict=True):
            key.data.mul_(self.momentum).add_(query.data, alpha=1 - self.momentum)

    def negatives(self, level: str) -> torch.Tensor:
        """The keys queued for ``level`` so far (all ``queue_size`` once it has been filled)."""
        index = self.levels.index(level)
        return self.queues[index, : int(self.filled[index])]

    @torch.no_grad()
    def enqueue(self, level: str, keys: torch.Tensor) -> None:
        """Write ``keys`` over the oldest keys of ``level``'s queue, wrapping around at its end."""
        index = self.levels.index(level)
        size = self.queues.shape[1]
        keys = keys.detach().to(self.queues.dtype)[-size:]
        positions = (int(self.pointers[index]) + torch.arange(len(keys), device=keys.device)) % size
        self.queues[index, positions] = keys
        self.pointers[index] = (int(self.pointers[index]) + len(keys)) % size
        self.filled[index] = min(size, int(self.filled[index]) + len(keys))

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The query backbone as a plain torchvision state dict (no ``fc``): what fine-tuning loads."""
        return {name: tensor.detach().cpu().clone() for name, tensor in self.backbone_q.state_dict().items()}
