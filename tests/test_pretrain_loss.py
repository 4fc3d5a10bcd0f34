"""The multi-level contrastive loss (Eq. 1-2) against a naive transcription, and the self-paced schedule
and anchor selection (Eq. 2-3) on hand-made cases."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from comcl.pretrain.loss import multilevel_loss
from comcl.pretrain.mining import THRESHOLDS, curriculum_share, negatives_at, select_anchors, self_paced_loss


def _embeddings(b: int, n: int, d: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(F.normalize(torch.randn(rows, d, generator=generator, dtype=dtype), dim=1) for rows in (b, b, n))


def _naive(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, tau: float, k: int | None) -> list[float]:
    """Eq. 1 and 2 as written: a loop over anchors, each keeping its k most similar negatives."""
    a, p, n = anchors.double().tolist(), positives.double().tolist(), negatives.double().tolist()
    losses = []
    for a_i, p_i in zip(a, p, strict=True):
        sim_pos = sum(x * y for x, y in zip(a_i, p_i, strict=True))
        sims = sorted((sum(x * y for x, y in zip(a_i, n_j, strict=True)) for n_j in n), reverse=True)
        if k is not None:
            sims = sims[:k]
        numerator = math.exp(sim_pos / tau)
        losses.append(-math.log(numerator / (numerator + sum(math.exp(s / tau) for s in sims))))
    return losses


@pytest.mark.parametrize(("b", "n", "d"), [(1, 1, 2), (4, 7, 8), (9, 32, 16), (16, 5, 128)])
@pytest.mark.parametrize("tau", [0.07, 0.2, 1.0])
@pytest.mark.parametrize("k", [None, 1, 3, 6])
def test_loss_matches_a_naive_transcription_of_eq_1(b: int, n: int, d: int, tau: float, k: int | None) -> None:
    anchors, positives, negatives = _embeddings(b, n, d, seed=b * 1000 + n, dtype=torch.float64)
    got = multilevel_loss(anchors, positives, negatives, tau, k)
    assert got.shape == (b,) and got.dtype == torch.float64
    assert got.tolist() == pytest.approx(_naive(anchors, positives, negatives, tau, k), rel=1e-10, abs=1e-12)


def test_k_at_or_above_n_is_no_mining_and_fewer_negatives_lower_the_loss() -> None:
    anchors, positives, negatives = _embeddings(6, 10, 16, seed=3)
    full = multilevel_loss(anchors, positives, negatives, 0.07)
    torch.testing.assert_close(multilevel_loss(anchors, positives, negatives, 0.07, k=10), full)
    torch.testing.assert_close(multilevel_loss(anchors, positives, negatives, 0.07, k=1000), full)
    by_k = torch.stack([multilevel_loss(anchors, positives, negatives, 0.07, k=k) for k in range(1, 11)])
    assert (by_k[1:] >= by_k[:-1]).all()
    assert (by_k[0] < by_k[-1]).all()


def test_hard_negatives_are_the_most_similar_per_anchor() -> None:
    """Anchor 0 is close to negative 0, anchor 1 to negative 1: with k = 1 each must see its own."""
    anchors = torch.eye(3, dtype=torch.float64)[:2]
    positives = anchors.clone()
    negatives = F.normalize(torch.tensor([[1.0, 0.0, 0.3], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]], dtype=torch.float64), dim=1)
    got = multilevel_loss(anchors, positives, negatives, 0.5, k=1)
    sim = negatives[0, 0].item()
    expected = math.log1p(math.exp((sim - 1.0) / 0.5))
    assert got.tolist() == pytest.approx([expected, expected], rel=1e-12)


@pytest.mark.parametrize("k", [None, 2])
def test_gradients_flow_to_anchors_positives_and_negatives(k: int | None) -> None:
    inputs = tuple(t.requires_grad_() for t in _embeddings(3, 4, 5, seed=11, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda a, p, n: multilevel_loss(a, p, n, 0.2, k), inputs)
    multilevel_loss(*inputs, 0.2, k).sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in inputs)


def test_loss_is_lowest_for_an_identical_positive_and_orthogonal_negatives() -> None:
    tau, n = 0.07, 8
    anchors = torch.eye(16)[:4]
    negatives = torch.eye(16)[4 : 4 + n]
    best = multilevel_loss(anchors, anchors, negatives, tau)
    torch.testing.assert_close(best, torch.full((4,), math.log1p(n * math.exp(-1.0 / tau))))
    _, positives, random_negatives = _embeddings(4, n, 16, seed=5)
    assert (multilevel_loss(anchors, positives, negatives, tau) > best).all()
    assert (multilevel_loss(anchors, anchors, random_negatives, tau) > best).all()
    assert (multilevel_loss(anchors, -anchors, negatives, tau) > math.log(n)).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_under_autocast_computes_in_float32(dtype: torch.dtype) -> None:
    anchors, positives, negatives = _embeddings(32, 64, 128, seed=7)
    half = [t.to(dtype) for t in (anchors, positives, negatives)]
    with torch.autocast("cpu", dtype=dtype):
        got = multilevel_loss(*half, 0.07, k=16)
    assert got.dtype == torch.float32
    # Exact up to float32 rounding on the rounded inputs: half-precision logits would be off by ~1e-2.
    torch.testing.assert_close(got, multilevel_loss(*[t.float() for t in half], 0.07, k=16), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, multilevel_loss(anchors, positives, negatives, 0.07, k=16), rtol=0.05, atol=0.1)


def test_loss_rejects_bad_shapes_and_arguments() -> None:
    anchors, positives, negatives = _embeddings(4, 6, 8)
    with pytest.raises(ValueError, match="anchors and positives"):
        multilevel_loss(anchors, positives[:3], negatives, 0.07)
    with pytest.raises(ValueError, match="anchors and positives"):
        multilevel_loss(anchors, positives[:, :7], negatives, 0.07)
    with pytest.raises(ValueError, match="negatives must be"):
        multilevel_loss(anchors, positives, negatives[:, :7], 0.07)
    with pytest.raises(ValueError, match="N >= 1"):
        multilevel_loss(anchors, positives, negatives[:0], 0.07)
    with pytest.raises(ValueError, match="at least 1"):
        multilevel_loss(anchors, positives, negatives, 0.07, k=0)
    with pytest.raises(ValueError, match="temperature"):
        multilevel_loss(anchors, positives, negatives, 0.0)


@pytest.mark.parametrize("delta", [1, 2, 3, 7, 100, 4096])
@pytest.mark.parametrize("total", [1, 2, 10, 1000])
def test_negatives_follow_the_quarter_cosine_schedule(delta: int, total: int) -> None:
    schedule = [negatives_at(t, total, delta) for t in range(total + 1)]
    assert schedule[0] == delta
    assert schedule[-1] == 1
    assert min(schedule) >= 1
    assert all(later <= earlier for earlier, later in itertools.pairwise(schedule))
    if total % 2 == 0:
        assert schedule[total // 2] == max(1, math.floor(delta * math.cos(math.pi / 4)))
    assert negatives_at(-5, total, delta) == delta
    assert negatives_at(total + 5, total, delta) == 1


def test_negatives_schedule_values_and_arguments() -> None:
    assert [negatives_at(t, 4, 100) for t in range(5)] == [100, 92, 70, 38, 1]
    with pytest.raises(ValueError):
        negatives_at(0, 0, 10)
    with pytest.raises(ValueError):
        negatives_at(0, 10, 0)


LOSSES = torch.tensor([0.1, 0.5, 0.2, 0.3, 0.05, 0.25])


def test_inverse_k_threshold_picks_exactly_the_anchors_below_it() -> None:
    selected = select_anchors(LOSSES, k_t=4, min_fraction=0.0, rule="inverse_k").mask
    assert selected.dtype == torch.bool
    assert selected.tolist() == [True, False, True, False, True, False]  # 0.25 is not below 1/4
    selected = select_anchors(LOSSES, k_t=2, min_fraction=0.0, rule="inverse_k").mask
    assert selected.tolist() == [True, False, True, True, True, True]


def test_min_fraction_guard_selects_the_lowest_loss_anchors() -> None:
    assert select_anchors(LOSSES, k_t=100, min_fraction=0.0, rule="inverse_k").mask.tolist() == [False] * 6
    cases = {
        (100, 0.1): [False, False, False, False, True, False],
        (4, 0.6): [True, False, True, False, True, True],
        (4, 0.5): [True, False, True, False, True, False],
    }
    for (k_t, min_fraction), expected in cases.items():
        assert select_anchors(LOSSES, k_t=k_t, min_fraction=min_fraction, rule="inverse_k").mask.tolist() == expected
    assert select_anchors(LOSSES, k_t=4, min_fraction=1.0, rule="inverse_k").mask.all()
    # 0.3 * 10 is 3.0000000000000004 in floating point: still three anchors, not four.
    assert int(select_anchors(torch.arange(10.0), k_t=1000, min_fraction=0.3, rule="inverse_k").mask.sum()) == 3


def test_none_rule_selects_all_and_unknown_rules_and_fractions_raise() -> None:
    assert set(THRESHOLDS) >= {"inverse_k", "none"}
    assert select_anchors(LOSSES * 100, k_t=1000, min_fraction=0.0, rule="none").mask.all()
    with pytest.raises(ValueError, match="curriculum, inverse_k, none"):
        select_anchors(LOSSES, k_t=4, min_fraction=0.0, rule="median")
    with pytest.raises(ValueError, match="min_fraction"):
        select_anchors(LOSSES, k_t=4, min_fraction=1.5, rule="inverse_k")


def test_selection_ignores_the_graph() -> None:
    losses = LOSSES.clone().requires_grad_()
    selected = select_anchors(losses, k_t=4, min_fraction=0.5, rule="inverse_k").mask
    assert not selected.requires_grad


def test_self_paced_loss_on_a_hand_made_example() -> None:
    losses = torch.tensor([1.0, 2.0, 4.0, math.inf], requires_grad=True)
    selected = torch.tensor([True, False, True, False])
    loss, objective = self_paced_loss(losses, selected, k_t=2)
    assert loss.item() == pytest.approx(2.5)
    assert objective == pytest.approx((5.0 - 2 / 2) / 4)
    loss.backward()
    assert losses.grad.tolist() == [0.5, 0.0, 0.5, 0.0]


def test_self_paced_loss_with_nothing_selected_is_zero() -> None:
    losses = torch.tensor([1.0, 2.0], requires_grad=True)
    loss, objective = self_paced_loss(losses, torch.zeros(2, dtype=torch.bool), k_t=3)
    loss.backward()
    assert loss.item() == 0.0 and objective == 0.0
    assert losses.grad.tolist() == [0.0, 0.0]


def test_unselected_anchors_get_no_gradient_end_to_end() -> None:
    anchors, positives, negatives = (t.requires_grad_() for t in _embeddings(6, 12, 8, seed=9))
    losses = multilevel_loss(anchors, positives, negatives, 0.2, k=4)
    selected = select_anchors(losses, k_t=4, min_fraction=0.5, rule="inverse_k").mask
    assert 3 <= int(selected.sum()) < 6
    self_paced_loss(losses, selected, k_t=4)[0].backward()
    assert (anchors.grad[~selected] == 0).all() and (positives.grad[~selected] == 0).all()
    assert (anchors.grad[selected].abs().sum(dim=1) > 0).all()


def test_the_guard_says_when_it_decided() -> None:
    assert select_anchors(LOSSES, k_t=100, min_fraction=0.1, rule="inverse_k").guarded
    assert not select_anchors(LOSSES, k_t=4, min_fraction=0.5, rule="inverse_k").guarded
    assert not select_anchors(LOSSES, k_t=100, min_fraction=0.0, rule="inverse_k").guarded  # nothing to guard: nothing selected


def test_curriculum_selects_a_rising_share_of_the_lowest_loss_anchors() -> None:
    assert curriculum_share(4096, 4096, 0.25) == pytest.approx(0.25)
    assert curriculum_share(1, 4096, 0.25) == 1.0
    assert curriculum_share(1, 1, 0.25) == 1.0
    first = select_anchors(LOSSES, k_t=10, min_fraction=0.25, rule="curriculum", delta=10)
    assert first.mask.tolist() == [True, False, False, False, True, False] and not first.guarded  # ceil(0.25 * 6)
    assert select_anchors(LOSSES, k_t=1, min_fraction=0.25, rule="curriculum", delta=10).mask.all()
    with pytest.raises(ValueError, match="delta"):
        select_anchors(LOSSES, k_t=4, min_fraction=0.25, rule="curriculum")


def test_over_a_run_the_curriculum_share_rises_to_all_while_the_literal_rule_stays_at_its_guard() -> None:
    """The simulation of the paper's setting (tau 0.07, batch 400, delta 4096): random embeddings give losses
    near log(1 + K_t), far above 1 / K_t, as in early training."""
    total, delta = 200, 4096
    generator = torch.Generator().manual_seed(0)
    anchors, negatives = (F.normalize(torch.randn(rows, 32, generator=generator), dim=1) for rows in (400, delta))
    positives = F.normalize(anchors + 0.5 * torch.randn(400, 32, generator=generator), dim=1)
    curriculum, literal = [], []
    for step in range(total):
        k_t = negatives_at(step, total, delta)
        losses = multilevel_loss(anchors, positives, negatives, 0.07, k_t)
        curriculum.append(float(select_anchors(losses, k_t, 0.25, "curriculum", delta).mask.float().mean()))
        chosen = select_anchors(losses, k_t, 0.25, "inverse_k")
        literal.append((float(chosen.mask.float().mean()), chosen.guarded))
    assert curriculum[0] == pytest.approx(0.25) and curriculum[-1] >= 0.9
    assert all(later >= earlier for earlier, later in itertools.pairwise(curriculum))
    assert all(share == 0.25 and guarded for share, guarded in literal)  # Eq. 3 as written selects nothing itself


def test_an_anchors_own_image_is_no_negative_of_it() -> None:
    anchors, positives, negatives = _embeddings(3, 5, 8, seed=4)
    exclude = torch.zeros(3, 5, dtype=torch.bool)
    exclude[0, 1] = exclude[2, 4] = True
    masked = multilevel_loss(anchors, positives, negatives, 0.2, k=None, exclude=exclude)
    for i in range(3):
        kept = negatives[~exclude[i]]
        expected = _naive(anchors[i : i + 1], positives[i : i + 1], kept, 0.2, None)
        assert masked[i].item() == pytest.approx(expected[0], rel=1e-5)
    # With hard-negative mining, an excluded negative is never among the k kept, however similar it is.
    negatives = negatives.clone()
    negatives[1] = anchors[0]
    mined = multilevel_loss(anchors, positives, negatives, 0.2, k=2, exclude=exclude)
    assert mined[0].item() == pytest.approx(_naive(anchors[:1], positives[:1], negatives[~exclude[0]], 0.2, 2)[0], rel=1e-5)
    with pytest.raises(ValueError, match="exclude"):
        multilevel_loss(anchors, positives, negatives, 0.2, exclude=exclude[:2])
