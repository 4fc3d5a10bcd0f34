"""The contrastive model: a query encoder with a projection head, its momentum copy, one key queue per level.

As in MoCo (He et al. 2020), keys come from a momentum encoder and wait in a queue, so the
negatives of a step are many and consistent without a huge batch. CoMCL keeps one queue per level
(L, L~, H, H~, or whatever groups a configuration names), so that a pair (m, n) draws its negatives
from level n only. Each queued key keeps the id of its image, so that an anchor never meets its own
image among its negatives (its earlier key, or another patch of it, in variants whose anchors and
negatives share a level). Queues, their image ids, write positions and how full they are are
buffers: they are saved in checkpoints, and a resumed run continues with the same negatives.

Batch norm sees the levels together. The query encoder encodes every anchor group of a step in one
pass, so a batch's statistics are those of all its levels and batch norm cannot remove the shift
between levels that the pairs (L, H) and (L, L~) exist to learn. The key encoder encodes every group
in one shuffled order, split into ``key_splits`` sub-batches with statistics of their own (MoCo's
shuffling BN, as MoCo v2's single-GPU code simulates several GPUs), so that a query and its positive
key do not share batch statistics.

Both encoders start from ImageNet weights (``init: imagenet``, as Huang et al.'s lesion-based CL and
the supervised baselines do) or from scratch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from comcl import distributed
from comcl.errors import DataError
from comcl.weights import load_state_dict


def backbone(arch: str, weights: Mapping[str, Tensor] | None = None) -> tuple[nn.Module, int]:
    """A torchvision ResNet without its classifier (``fc`` is the identity), and its feature width.

    ``weights``: a torchvision state dict of the whole network (ImageNet's), loaded before ``fc`` goes.
    """
    if not arch.startswith("resnet") or not hasattr(torchvision.models, arch):
        raise ValueError(f"unknown backbone {arch!r}: use a torchvision ResNet (resnet18, resnet34, resnet50, ...)")
    network = getattr(torchvision.models, arch)(weights=None)
    if weights is not None:
        network.load_state_dict(weights)
    width = network.fc.in_features
    network.fc = nn.Identity()
    return network, width


def read_imagenet(path: Path, arch: str) -> dict[str, Tensor]:
    """ImageNet weights of ``arch`` from ``path``, checked to fit it (a whole torchvision network, ``fc`` included)."""
    hint = "delete the file so that it is downloaded again, or set pretrain.init: scratch"
    try:
        state = load_state_dict(path)
        backbone(arch, state)
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        raise DataError(f"not ImageNet weights of {arch}: {error}", path=path, hint=hint) from error
    return state


def _layout(images: Tensor) -> Tensor:
    """Channels-last on a GPU, where its convolutions are faster (a concatenation or an index may return another layout)."""
    return images.contiguous(memory_format=torch.channels_last) if images.is_cuda else images


def projection_head(width: int, hidden: int, dim: int) -> nn.Module:
    """The MLP that maps features to the embedding the loss compares (paper: 2048 -> 2048 -> 128)."""
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))


class ContrastiveModel(nn.Module):
    """Query and momentum key encoders (backbone + head) and ``len(levels)`` queues of ``queue_size`` keys."""

    # The buffers registered in __init__ (nn.Module's attribute lookup alone would type them Tensor | Module).
    queues: Tensor
    queue_images: Tensor
    pointers: Tensor
    filled: Tensor

    def __init__(
        self,
        arch: str,
        levels: Sequence[str],
        queue_size: int,
        dim: int = 128,
        hidden: int | None = None,
        momentum: float = 0.999,
        weights: Mapping[str, Tensor] | None = None,
    ):
        super().__init__()
        self.levels = list(levels)
        self.momentum = momentum
        self.backbone_q, width = backbone(arch, weights)
        self.head_q = projection_head(width, hidden or width, dim)
        self.backbone_k, _ = backbone(arch)
        self.head_k = projection_head(width, hidden or width, dim)
        self.backbone_k.load_state_dict(self.backbone_q.state_dict())
        self.head_k.load_state_dict(self.head_q.state_dict())
        for key in self._key_parameters():
            key.requires_grad = False
        self.register_buffer("queues", torch.zeros(len(self.levels), queue_size, dim))
        # -1: no image (an empty slot), never equal to an anchor's image id.
        self.register_buffer("queue_images", torch.full((len(self.levels), queue_size), -1, dtype=torch.long))
        self.register_buffer("pointers", torch.zeros(len(self.levels), dtype=torch.long))
        self.register_buffer("filled", torch.zeros(len(self.levels), dtype=torch.long))

    def synchronise_queries(self) -> ContrastiveModel:
        """Under several processes, the query encoder's batch norm over every process's rows; the key encoder's
        stays per sub-batch (:meth:`shuffled_keys`). One process: unchanged."""
        self.backbone_q = distributed.synchronise_batch_norm(self.backbone_q)
        return self

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

    def queries(self, groups: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Query embeddings of every group, encoded in one pass: batch norm over all the groups together."""
        names = list(groups)
        embeddings = self.query(_layout(torch.cat([groups[name] for name in names])))
        return dict(zip(names, embeddings.split([len(groups[name]) for name in names]), strict=True))

    @torch.no_grad()
    def shuffled_keys(self, groups: Mapping[str, Tensor], splits: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Key embeddings of every group's rows (this process's shard), by MoCo's shuffling batch norm.

        The groups' rows of every process are concatenated, put in an order drawn from ``generator`` (the
        same on every process) and cut into ``splits`` sub-batches, each encoded with statistics of its own;
        under several processes each encodes its share of the sub-batches. The keys come back in the
        original order, so the result does not depend on the number of processes.
        """
        names = list(groups)
        mine = torch.cat([groups[name] for name in names])  # (n, 3, S, S): this process's rows, group by group
        counts = distributed.all_gather(torch.tensor([[len(groups[name]) for name in names]]))  # (P, G)
        gathered = distributed.all_gather(mine)  # (N, 3, S, S): process by process, group by group in each
        # The whole batch group by group, a group's rows of every process together, as one process holds it.
        starts = (counts.flatten().cumsum(0) - counts.flatten()).view_as(counts)
        order = [
            torch.arange(start, start + count)
            for g in range(len(names))
            for start, count in zip(starts[:, g].tolist(), counts[:, g].tolist(), strict=True)
        ]
        whole = gathered[torch.cat(order).to(gathered.device)]
        permutation = torch.randperm(len(whole), generator=generator)
        # Batch norm needs two items per sub-batch: a ResNet's last maps can be 1 x 1.
        chunks = list(permutation.tensor_split(max(1, min(splits, len(whole) // 2))))
        encoded = [self.key(_layout(whole[chunk.to(whole.device)])) for chunk in chunks[distributed.shard(len(chunks))]]
        keys = torch.empty(len(whole), self.queues.shape[2], device=whole.device)  # (N, D), whole-batch order
        keys[permutation.to(whole.device)] = distributed.all_gather(torch.cat(encoded) if encoded else keys[:0])
        # This process's rows of each group: after the groups before it, and the other processes' rows before it.
        out, first, rank = {}, 0, distributed.rank()
        for g, name in enumerate(names):
            offset = first + int(counts[:rank, g].sum())
            out[name] = keys[offset : offset + int(counts[rank, g])]
            first += int(counts[:, g].sum())
        return out

    @torch.no_grad()
    def momentum_update(self) -> None:
        for query, key in zip(self._query_parameters(), self._key_parameters(), strict=True):
            key.data.mul_(self.momentum).add_(query.data, alpha=1 - self.momentum)

    def negatives(self, level: str) -> torch.Tensor:
        """The keys queued for ``level`` so far (all ``queue_size`` once it has been filled)."""
        index = self.levels.index(level)
        return self.queues[index, : int(self.filled[index])]

    def negative_images(self, level: str) -> torch.Tensor:
        """The image id of each key of :meth:`negatives` (-1 where none was given)."""
        index = self.levels.index(level)
        return self.queue_images[index, : int(self.filled[index])]

    @torch.no_grad()
    def enqueue(self, level: str, keys: torch.Tensor, images: torch.Tensor | None = None) -> None:
        """Write ``keys`` (and their ``images`` ids) over the oldest keys of ``level``'s queue, wrapping around."""
        index = self.levels.index(level)
        size = self.queues.shape[1]
        keys = keys.detach().to(self.queues.dtype)[-size:]
        images = torch.full((len(keys),), -1, dtype=torch.long) if images is None else images[-size:]
        positions = (int(self.pointers[index]) + torch.arange(len(keys), device=keys.device)) % size
        self.queues[index, positions] = keys
        self.queue_images[index, positions] = images.to(self.queue_images.device, torch.long)
        self.pointers[index] = (int(self.pointers[index]) + len(keys)) % size
        self.filled[index] = min(size, int(self.filled[index]) + len(keys))

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The query backbone as a plain torchvision state dict (no ``fc``): what fine-tuning loads."""
        return {name: tensor.detach().cpu().clone() for name, tensor in self.backbone_q.state_dict().items()}
