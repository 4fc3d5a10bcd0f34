"""The multi-level contrastive loss of CoMCL: one positive per anchor against a pool of negatives, optionally
only the hardest ones.

One function serves every level pair (m, n) and every baseline: the caller decides which embeddings are
anchors, positives and negatives; the loss only sees three tensors of L2-normalised embeddings.
"""

from __future__ import annotations

import torch
from torch import Tensor


def multilevel_loss(
    anchors: Tensor, positives: Tensor, negatives: Tensor, temperature: float, k: int | None = None, exclude: Tensor | None = None
) -> Tensor:
    """Per-anchor loss of Eq. 1, with the hard negatives of Eq. 2 when ``k`` is given: shape ``(B,)``.

    ``L_i = -log( exp(a_i.p_i / tau) / (exp(a_i.p_i / tau) + sum_{j in S_i} exp(a_i.n_j / tau)) )``, where
    ``anchors`` and ``positives`` are ``(B, D)``, ``negatives`` is ``(N, D)``, all already L2-normalised, so a
    dot product is the cosine similarity. ``S_i`` is every negative when ``k`` is None or ``k >= N``, else the
    ``k`` negatives most similar to anchor ``i`` (Eq. 2, with ``k = K_t`` from the self-paced schedule).
    ``exclude``, a bool ``(B, N)`` mask, takes negatives out of an anchor's set before the hard ones are
    picked: those of the anchor's own image (its earlier key in a queue, another patch of it), which are
    no negatives of it.

    The losses are per anchor, not summed, so the self-paced anchor selection (Eq. 3) can weight them. The
    logits are computed in at least float32 with autocast off: at ``tau = 0.07`` a half-precision similarity
    error of 1e-3 would already shift a logit by 1e-2, and ``logsumexp`` keeps large logits from overflowing.
    """
    if anchors.ndim != 2 or positives.shape != anchors.shape:
        raise ValueError(f"anchors and positives must both be (B, D), got {tuple(anchors.shape)} and {tuple(positives.shape)}")
    if negatives.ndim != 2 or negatives.shape[0] < 1 or negatives.shape[1] != anchors.shape[1]:
        raise ValueError(f"negatives must be (N, D) with N >= 1 and D = {anchors.shape[1]}, got {tuple(negatives.shape)}")
    if k is not None and k < 1:
        raise ValueError(f"k (the number of hard negatives per anchor) must be at least 1 or None, got {k}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if exclude is not None and exclude.shape != (anchors.shape[0], negatives.shape[0]):
        raise ValueError(f"exclude must be a (B, N) mask, got {tuple(exclude.shape)}")
    dtype = torch.promote_types(anchors.dtype, torch.float32)
    with torch.autocast(device_type=anchors.device.type, enabled=False):
        anchors, positives, negatives = anchors.to(dtype), positives.to(dtype), negatives.to(dtype)
        positive = (anchors * positives).sum(dim=1) / temperature
        negative = anchors @ negatives.T / temperature
        if exclude is not None:
            negative = negative.masked_fill(exclude, -torch.inf)
        if k is not None and k < negative.shape[1]:
            # The temperature is positive, so the largest logits are the most similar negatives.
            negative = torch.topk(negative, k, dim=1, sorted=False).values
        logits = torch.cat([positive[:, None], negative], dim=1)
        return torch.logsumexp(logits, dim=1) - positive
