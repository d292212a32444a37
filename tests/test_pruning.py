"""Tests of mappings.pruning: exact target counts, kept structure, determinism."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from torch import nn

from desim.errors import ConfigError
from mappings.pruning import (
    DropBack,
    PruningSpec,
    block_circulant,
    block_prune,
    channel_prune,
    check_layers,
    cubic_sparsity,
    dynamic_prune,
    filter_prune,
    hybrid_channel_count,
    hybrid_prune,
    is_block_circulant,
    keep_top,
    line_prune,
    magnitude,
    n_m,
    pe_wise_prune,
    permuted_diagonal,
    prune_model,
    regenerate,
    rigl_regrow,
    set_regrow,
    ternarize,
)

FAST = settings(max_examples=40, deadline=None)
sparsities = st.floats(min_value=0.0, max_value=0.99, allow_nan=False)
dims = st.integers(min_value=1, max_value=7)


def randn(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@st.composite
def weights(draw: st.DrawFn) -> torch.Tensor:
    """A random conv (K, C, R, S) or linear (K, C) weight."""
    shape = (draw(dims), draw(dims))
    if draw(st.booleans()):
        shape += (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return randn(shape, draw(st.integers(0, 2**16)))


def four_d(w: torch.Tensor) -> torch.Tensor:
    return w if w.dim() == 4 else w[:, :, None, None]


# --- ranking rule -------------------------------------------------------------------------


def test_keep_top_breaks_ties_by_index() -> None:
    assert keep_top(torch.zeros(6), 2).tolist() == [False, False, True, True, True, True]
    scores = torch.tensor([[3.0, 1.0, 2.0], [0.0, 0.0, 5.0]])
    assert keep_top(scores, 1, dim=1).tolist() == [[True, False, True], [False, True, True]]
    # NaN ranks above +inf (a diverged score is pruned last)
    assert keep_top(torch.tensor([math.nan, math.inf, 0.0]), 2).tolist() == [True, False, False]


@FAST
@given(st.lists(st.integers(1, 5), min_size=1, max_size=3), st.integers(0, 2**16),
       st.integers(0, 6), st.data())
def test_keep_top_prunes_the_lowest_of_a_stable_sort(shape: list[int], seed: int, n: int,
                                                     data: st.DataObject) -> None:
    """keep_top selects in linear time; it must prune exactly what a stable ascending sort
    puts first along `dim`, with many ties (small integers, -inf for pruned channels) and
    infinities and NaNs."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(-2, 3, shape, generator=g).float()
    scores[torch.rand(shape, generator=g) < 0.2] = -math.inf
    scores[torch.rand(shape, generator=g) < 0.1] = math.inf
    scores[torch.rand(shape, generator=g) < 0.1] = math.nan  # sorted last, after +inf
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    order = torch.sort(scores, dim=dim, stable=True).indices
    first = order.narrow(dim, 0, min(n, shape[dim]))
    expected = torch.ones(shape, dtype=torch.bool).scatter_(dim, first, False)
    assert torch.equal(keep_top(scores, n, dim), expected)


def test_sparsity_out_of_range_is_config_error() -> None:
    with pytest.raises(ConfigError):
        magnitude(torch.ones(4), 1.0)
    with pytest.raises(ConfigError):
        filter_prune(torch.ones(4, 4), -0.1)


# --- unstructured ---------------------------------------------------------------------------


@FAST
@given(w=weights(), s=sparsities)
def test_magnitude_exact_and_smallest(w: torch.Tensor, s: float) -> None:
    mask = magnitude(w, s)
    assert mask.dtype == torch.bool and mask.shape == w.shape
    assert int((~mask).sum()) == round(s * w.numel())
    if mask.any() and (~mask).any():
        assert w.abs()[mask].min() >= w.abs()[~mask].max()


def test_magnitude_ties_prune_lowest_index_first() -> None:
    mask = magnitude(torch.ones(2, 5), 0.3)
    assert mask.flatten().tolist() == [False] * 3 + [True] * 7


def test_dynamic_prune_follows_current_magnitudes() -> None:
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert dynamic_prune(w, 0.5).tolist() == [False, False, True, True]
    w[0] = 10.0  # a pruned weight that grew comes back next iteration
    assert dynamic_prune(w, 0.5).tolist() == [True, False, False, True]


# --- N:M ------------------------------------------------------------------------------------


@FAST
@given(
    k=dims, groups=st.integers(1, 4), m=st.integers(1, 8), data=st.data(),
    rs=st.sampled_from([None, (1, 1), (3, 3), (2, 3)]), seed=st.integers(0, 999),
)
def test_n_m_every_group(k: int, groups: int, m: int, data: st.DataObject,
                         rs: tuple[int, int] | None, seed: int) -> None:
    n = data.draw(st.integers(0, m))
    shape = (k, groups * m) + (rs or ())
    w = randn(shape, seed)
    mask = n_m(w, n, m)
    g = four_d(mask).reshape(k, groups, m, *four_d(mask).shape[2:])
    assert (g.sum(2) == n).all()
    assert int(mask.sum()) == w.numel() * n // m
    a = four_d(w).abs().reshape(g.shape)
    kept_min = a.masked_fill(~g, math.inf).amin(2)
    pruned_max = a.masked_fill(g, -math.inf).amax(2)
    assert (kept_min >= pruned_max).all()


def test_n_m_2_4_example_and_errors() -> None:
    w = torch.tensor([[0.1, -0.9, 0.5, 0.2, 4.0, 3.0, -2.0, 1.0]])
    assert n_m(w, 2, 4).int().tolist() == [[0, 1, 1, 0, 1, 1, 0, 0]]
    with pytest.raises(ConfigError):
        n_m(torch.ones(2, 6), 2, 4)
    with pytest.raises(ConfigError):
        n_m(torch.ones(2, 8), 5, 4)


# --- filter / channel / line --------------------------------------------------------------


@FAST
@given(w=weights(), s=sparsities)
def test_filter_prune_whole_filters(w: torch.Tensor, s: float) -> None:
    m4 = four_d(filter_prune(w, s))
    whole = m4.all(dim=(1, 2, 3))
    assert (whole | ~m4.any(dim=(1, 2, 3))).all()
    assert int((~whole).sum()) == round(s * w.shape[0])
    norms = torch.linalg.vector_norm(four_d(w), dim=(1, 2, 3))
    if whole.any() and (~whole).any():
        assert norms[whole].min() >= norms[~whole].max()


@FAST
@given(w=weights(), s=sparsities)
def test_channel_prune_whole_input_channels(w: torch.Tensor, s: float) -> None:
    m4 = four_d(channel_prune(w, s))
    whole = m4.all(dim=(0, 2, 3))
    assert (whole | ~m4.any(dim=(0, 2, 3))).all()
    assert int((~whole).sum()) == round(s * w.shape[1])


@FAST
@given(w=weights(), s=sparsities)
def test_line_prune_whole_rows(w: torch.Tensor, s: float) -> None:
    m4 = four_d(line_prune(w, s))
    assert (m4.all(-1) | ~m4.any(-1)).all()
    k, c, r, _ = m4.shape
    assert int((~m4.all(-1)).sum()) == round(s * (k * c * r))  # pruned_count: units first
    l1 = four_d(w).abs().sum(-1)
    kept = m4.all(-1)
    if kept.any() and (~kept).any():
        assert l1[kept].min() >= l1[~kept].max()


def test_line_prune_example() -> None:
    w = torch.arange(1.0, 13.0).reshape(1, 1, 4, 3)  # row L1 norms 6, 15, 24, 33
    w[0, 0, 3] = 0.0
    mask = line_prune(w, 0.5)
    assert mask[0, 0].all(-1).tolist() == [False, True, True, False]


# --- hybrid (HPPU) --------------------------------------------------------------------------


@FAST
@given(w=weights(), s=sparsities, share=st.floats(0.0, 1.0))
def test_hybrid_channels_then_lines_exact(w: torch.Tensor, s: float, share: float) -> None:
    m4 = four_d(hybrid_prune(w, s, share))
    k, c, r, sw = m4.shape
    assert (m4.all(-1) | ~m4.any(-1)).all()  # only whole lines pruned
    assert int((~m4.all(-1)).sum()) == round(s * (k * c * r))  # total exact
    channels = hybrid_channel_count(tuple(w.shape), s, share)
    assert channels * k * r * sw <= share * s * w.numel() + 1e-6
    # the `channels` input channels of smallest L2 norm are entirely pruned
    order = torch.sort(torch.linalg.vector_norm(four_d(w), dim=(0, 2, 3)), stable=True).indices
    assert not m4[:, order[:channels]].any()


def test_hybrid_example() -> None:
    # 2 filters, 4 channels, 2x2 kernels: 16 lines. Channel 1 is tiny, channel 3 has one
    # weak line per filter. s=0.5 -> 8 lines; share 0.5 -> floor(0.25*4)=1 channel (4 lines),
    # then the 4 weakest remaining lines.
    w = torch.ones(2, 4, 2, 2)
    w[:, 1] = 0.01
    w[:, 3, 0] = 0.1
    w[:, 0, 1] = 0.5
    assert hybrid_channel_count(tuple(w.shape), 0.5, 0.5) == 1
    lines = hybrid_prune(w, 0.5, 0.5).all(-1)  # (K, C, R)
    expected = torch.ones(2, 4, 2, dtype=torch.bool)
    expected[:, 1] = False
    expected[:, 3, 0] = False
    expected[:, 0, 1] = False
    assert torch.equal(lines, expected)
    # with share 0 it is pure line pruning
    assert torch.equal(hybrid_prune(w, 0.5, 0.0), line_prune(w, 0.5))


def test_hybrid_channel_part_never_exceeds_share() -> None:
    assert hybrid_channel_count((8, 10, 3, 3), 0.4, 0.5) == 2  # 0.5*0.4*10 = 2 exactly
    assert hybrid_channel_count((8, 10, 3, 3), 0.39, 0.5) == 1
    assert hybrid_channel_count((8, 10), 0.9, 1.0) == 9


# --- block / PE-wise ------------------------------------------------------------------------


@FAST
@given(w=weights(), s=sparsities, bk=st.integers(1, 4), bc=st.integers(1, 4))
def test_block_prune_whole_blocks(w: torch.Tensor, s: float, bk: int, bc: int) -> None:
    kc = four_d(block_prune(w, s, (bk, bc)))
    assert (kc.all(dim=(2, 3)) | ~kc.any(dim=(2, 3))).all()
    kc = kc.all(dim=(2, 3))
    k, c = kc.shape
    pad = torch.nn.functional.pad(kc.float(), (0, -c % bc, 0, -k % bk), value=-1.0)
    blocks = pad.reshape(pad.shape[0] // bk, bk, pad.shape[1] // bc, bc).transpose(1, 2)
    blocks = blocks.reshape(blocks.shape[0], blocks.shape[1], -1)
    real = blocks >= 0
    kept = ((blocks == 1) | ~real).all(-1)
    assert (kept | ~((blocks == 1) & real).any(-1)).all()
    assert int((~kept).sum()) == round(s * kept.numel())


@FAST
@given(
    pe_rows=st.integers(1, 4), pe_cols=st.integers(1, 4), tiles_k=st.integers(1, 3),
    tiles_n=st.integers(1, 3), conv=st.booleans(), s=sparsities, seed=st.integers(0, 999),
)
def test_pe_wise_balanced_per_pe_row(pe_rows: int, pe_cols: int, tiles_k: int, tiles_n: int,
                                     conv: bool, s: float, seed: int) -> None:
    k = pe_rows * tiles_k
    shape = (k, pe_cols * tiles_n, 1, 1) if conv else (k, pe_cols * tiles_n)
    w = randn(shape, seed)
    mask = pe_wise_prune(w, s, pe_rows, pe_cols).reshape(k, -1)
    groups = mask.reshape(k, -1, pe_cols)
    # inside each PE row the pruned groups are those of smallest L2 norm
    norms = torch.linalg.vector_norm(w.reshape(k, -1, pe_cols), dim=-1)
    by_row = norms.reshape(tiles_k, pe_rows, -1).transpose(0, 1).reshape(pe_rows, -1)
    kept = groups.all(-1).reshape(tiles_k, pe_rows, -1).transpose(0, 1).reshape(pe_rows, -1)
    kept_min = by_row.masked_fill(~kept, math.inf).amin(1)
    assert (kept_min >= by_row.masked_fill(kept, -math.inf).amax(1)).all()
    assert (groups.all(-1) | ~groups.any(-1)).all()  # whole PE-aligned groups
    per_row_groups = tiles_k * tiles_n
    pruned_groups = (~groups.all(-1)).reshape(tiles_k, pe_rows, -1).sum((0, 2))
    assert pruned_groups.tolist() == [round(s * per_row_groups)] * pe_rows
    # every PE (row k % pe_rows, column n % pe_cols) keeps the same number of weights
    per_pe = mask.reshape(tiles_k, pe_rows, tiles_n, pe_cols).sum((0, 2))
    assert (per_pe == per_pe[0, 0]).all()


def test_pe_wise_needs_divisible_dims() -> None:
    with pytest.raises(ConfigError):
        pe_wise_prune(torch.ones(6, 8), 0.5, 4, 2)
    with pytest.raises(ConfigError):
        pe_wise_prune(torch.ones(8, 6, 1, 1), 0.5, 4, 4)


# --- PermDNN / CirCNN / TWN -------------------------------------------------------------


@FAST
@given(p=st.integers(1, 5), kb=st.integers(1, 3), nb=st.integers(1, 3), seed=st.integers(0, 99))
def test_permuted_diagonal_one_per_row_and_column(p: int, kb: int, nb: int, seed: int) -> None:
    mask = permuted_diagonal(torch.ones(kb * p, nb * p), p, seed)
    blocks = mask.reshape(kb, p, nb, p)
    assert (blocks.sum(3) == 1).all() and (blocks.sum(1) == 1).all()
    assert int(mask.sum()) * p == mask.numel()  # sparsity exactly 1 - 1/p
    assert torch.equal(mask, permuted_diagonal(torch.ones(kb * p, nb * p), p, seed))
    # entries sit on a wrapped diagonal: column - row is constant mod p inside a block
    rows, cols = blocks.nonzero(as_tuple=True)[1], blocks.nonzero(as_tuple=True)[3]
    offsets = ((cols - rows) % p).reshape(kb, p, nb)  # nonzero() is row-major: (a, i, b)
    assert (offsets == offsets[:, :1]).all()


def test_permuted_diagonal_conv_and_errors() -> None:
    mask = permuted_diagonal(torch.ones(8, 2, 3, 3), 2, seed=3)
    assert mask.shape == (8, 2, 3, 3) and int(mask.sum()) == 72
    seeds = {permuted_diagonal(torch.ones(16, 16), 4, s).flatten().tolist().__str__()
             for s in range(5)}
    assert len(seeds) > 1  # the seed matters
    with pytest.raises(ConfigError):
        permuted_diagonal(torch.ones(6, 8), 4)


@FAST
@given(b=st.integers(1, 4), kb=st.integers(1, 3), cb=st.integers(1, 3),
       rs=st.sampled_from([None, (1, 1), (3, 3)]), seed=st.integers(0, 999))
def test_block_circulant_projection(b: int, kb: int, cb: int, rs: tuple[int, int] | None,
                                    seed: int) -> None:
    w = randn((kb * b, cb * b) + (rs or ()), seed)
    proj = block_circulant(w, b)
    assert proj.shape == w.shape and is_block_circulant(proj, b)
    blocks = four_d(proj).permute(2, 3, 0, 1).reshape(-1, kb, b, cb, b).transpose(2, 3)
    for i in range(b):  # row i of every block is its first row rolled by i
        assert torch.allclose(blocks[..., i, :], torch.roll(blocks[..., 0, :], i, dims=-1))
    assert torch.allclose(block_circulant(proj, b), proj, atol=1e-6)  # idempotent
    # nearest in Frobenius norm: no worse than a random circulant of the same structure
    other = block_circulant(randn(tuple(w.shape), seed + 1), b)
    assert (w - proj).norm() <= (w - other).norm() + 1e-6
    # block sums are preserved (each diagonal is replaced by its mean)
    orig = four_d(w).permute(2, 3, 0, 1).reshape(-1, kb, b, cb, b).sum((2, 4))
    assert torch.allclose(blocks.sum((3, 4)), orig, atol=1e-5)


def test_block_circulant_example_and_check() -> None:
    w = torch.tensor([[1.0, 2.0], [4.0, 3.0]])  # diagonals: (1+3)/2 = 2, (2+4)/2 = 3
    assert block_circulant(w, 2).tolist() == [[2.0, 3.0], [3.0, 2.0]]
    assert not is_block_circulant(w, 2)
    with pytest.raises(ConfigError):
        block_circulant(torch.ones(4, 6), 4)


def test_ternarize_example() -> None:
    w = torch.tensor([0.1, -0.5, 1.0, -2.0])  # mean|w| = 0.9, delta = 0.63
    t, scale = ternarize(w)
    assert t.dtype == torch.int8 and t.tolist() == [0, 0, 1, -1]
    assert scale == pytest.approx(1.5)
    t0, scale0 = ternarize(torch.zeros(3))
    assert t0.tolist() == [0, 0, 0] and scale0 == 0.0


@FAST
@given(w=weights(), ratio=st.floats(0.0, 1.5))
def test_ternarize_values(w: torch.Tensor, ratio: float) -> None:
    t, scale = ternarize(w, ratio)
    assert set(t.unique().tolist()) <= {-1, 0, 1}
    delta = ratio * w.abs().mean()
    assert torch.equal(t != 0, w.abs() > delta)
    assert torch.equal(t[t != 0], torch.sign(w)[t != 0].to(torch.int8))
    if (t != 0).any():
        assert scale == pytest.approx(float(w.abs()[t != 0].mean()), rel=1e-5)


# --- DropBack ---------------------------------------------------------------------------------


def test_regenerate_is_deterministic() -> None:
    a = regenerate("conv.weight", (4, 3, 3, 3), seed=7)
    assert torch.equal(a, regenerate("conv.weight", (4, 3, 3, 3), seed=7))
    assert not torch.equal(a, regenerate("conv.weight", (4, 3, 3, 3), seed=8))
    assert not torch.equal(a, regenerate("fc.weight", (4, 3, 3, 3), seed=7))
    assert a.abs().max() <= 1 / math.sqrt(27)


@pytest.mark.parametrize("seed", [None, 11])
def test_dropback_keeps_k_and_resets_untracked(seed: int | None) -> None:
    """After each step the k weights farthest from their initial values are kept, the others
    reset (the authors' rule, compstruct/DropBack), computed here by hand alongside."""
    gen = torch.Generator().manual_seed(0)
    params = {"a": torch.randn(6, 4, generator=gen), "b": torch.randn(10, generator=gen)}
    db = DropBack(params, k=9, seed=seed)
    init = {n: p.clone() for n, p in params.items()}
    if seed is not None:  # the seed alone determines the initial values
        assert torch.equal(params["a"], regenerate("a", (6, 4), seed))
    by_hand = {n: p.clone() for n, p in params.items()}
    for _ in range(4):
        grads = {n: torch.randn(p.shape, generator=gen) for n, p in params.items()}
        for n, p in params.items():
            p -= 0.1 * grads[n]  # the optimizer step
            by_hand[n] -= 0.1 * grads[n]
        moved = torch.cat([(by_hand[n] - init[n]).abs().flatten() for n in ("a", "b")])
        kept = torch.zeros(moved.numel(), dtype=torch.bool)
        kept[moved.argsort(descending=True)[:9]] = True
        for n, part in zip(("a", "b"), kept.split([24, 10]), strict=True):
            by_hand[n] = torch.where(part.view(init[n].shape), by_hand[n], init[n])
        masks = db.apply(params)
        assert torch.equal(torch.cat([masks["a"].flatten(), masks["b"]]), kept)
        for n, p in params.items():
            assert torch.equal(p, by_hand[n])
            assert torch.equal(p[~masks[n]], init[n][~masks[n]])
            assert torch.equal(db.initial(n), init[n])
    assert not torch.equal(params["a"], init["a"])  # tracked weights did train


def test_dropback_ranks_by_the_net_move_not_the_summed_gradient_magnitude() -> None:
    """Two weights from 0, k = 1: the first's steps of 0.3 cancel (+, -, +, -: summed |step|
    1.2, the most), the second's steps of 0.2 add up. Step 1: moved 0.3 and 0.2, the first
    is tracked, the second reset to 0. Step 2: 0 and 0.2, the second is tracked from then on
    (0.4 against 0.3, 0.6 against 0.3), and ends at 0.6; the first is reset each time."""
    params = {"w": torch.zeros(2)}
    db = DropBack(params, k=1)
    tracked = []
    for step in (0.3, -0.3, 0.3, -0.3):
        params["w"] += torch.tensor([step, 0.2])
        tracked.append(db.apply(params)["w"].tolist())
    assert tracked == [[True, False], [False, True], [False, True], [False, True]]
    assert params["w"].tolist() == pytest.approx([0.0, 0.6])


def test_procrustes_dropback_decays_the_initial_values_after_the_first_step() -> None:
    """init_decay 0.5 (the authors' rule, compstruct/procrustes-ml-models): d = 1 at the first
    step, then 0.5, 0.25; weights scored by |w - d w0|, the untracked reset to d w0. Two
    weights from w0 = (1, 2), k = 1. Step 1 (d = 1) moves them by (0.3, 0.1): scores 0.3 and
    0.1, the first tracked (1.3), the second reset to 2. Step 2 (d = 0.5): no move, scores
    |1.3 - 0.5| = 0.8 and |2 - 1| = 1: the second is tracked (2), the first reset to 0.5.
    Step 3 (d = 0.25): scores |0.5 - 0.25| = 0.25, |2 - 0.5| = 1.5: the first reset to 0.25."""
    params = {"w": torch.tensor([1.0, 2.0])}
    db = DropBack(params, k=1, init_decay=0.5)
    params["w"] += torch.tensor([0.3, 0.1])
    assert db.apply(params)["w"].tolist() == [True, False] and db.rate == 1.0
    assert params["w"].tolist() == pytest.approx([1.3, 2.0])
    assert db.apply(params)["w"].tolist() == [False, True] and db.rate == 0.5
    assert params["w"].tolist() == pytest.approx([0.5, 2.0])
    assert db.apply(params)["w"].tolist() == [False, True] and db.rate == 0.25
    assert params["w"].tolist() == pytest.approx([0.25, 2.0])
    assert db.initial("w").tolist() == [1.0, 2.0]  # what the generator regenerates, then scales


def test_dropback_k_larger_than_model_tracks_all() -> None:
    params = {"w": torch.ones(3)}
    assert DropBack(params, k=10).apply(params)["w"].all()
    with pytest.raises(ConfigError):
        DropBack(params, k=-1)


# --- schedules --------------------------------------------------------------------------------


def test_cubic_sparsity() -> None:
    assert cubic_sparsity(0, 0.0, 0.8, 10, 110) == 0.0
    assert cubic_sparsity(10, 0.0, 0.8, 10, 110) == 0.0
    assert cubic_sparsity(60, 0.0, 0.8, 10, 110) == pytest.approx(0.8 - 0.8 * 0.125)
    assert cubic_sparsity(110, 0.0, 0.8, 10, 110) == pytest.approx(0.8)
    assert cubic_sparsity(500, 0.0, 0.8, 10, 110) == pytest.approx(0.8)
    values = [cubic_sparsity(t, 0.1, 0.9, 0, 50) for t in range(60)]
    assert values == sorted(values)
    with pytest.raises(ConfigError):
        cubic_sparsity(0, 0.0, 0.5, 10, 10)


@FAST
@given(w=weights(), s=st.floats(0.05, 0.95), fraction=st.floats(0.0, 1.0),
       seed=st.integers(0, 999))
def test_set_and_rigl_keep_count(w: torch.Tensor, s: float, fraction: float, seed: int) -> None:
    mask = magnitude(randn(tuple(w.shape), seed), s)
    kept = int(mask.sum())
    n = min(round(fraction * kept), mask.numel() - kept)
    grad = randn(tuple(w.shape), seed + 1)
    for new in (set_regrow(w, mask, fraction, torch.Generator().manual_seed(seed)),
                rigl_regrow(w, grad, mask, fraction)):
        assert int(new.sum()) == kept
        assert int((mask & ~new).sum()) == n  # dropped
        assert int((~mask & new).sum()) == n  # regrown at previously pruned positions
        dropped, stayed = mask & ~new, mask & new
        if dropped.any() and stayed.any():
            assert w.abs()[dropped].max() <= w.abs()[stayed].min()
    rigl = rigl_regrow(w, grad, mask, fraction)
    grown, left = ~mask & rigl, ~mask & ~rigl
    if grown.any() and left.any():
        assert grad.abs()[grown].min() >= grad.abs()[left].max()


def test_set_regrow_is_seeded() -> None:
    w = randn((16, 16), 1)
    mask = magnitude(w, 0.75)
    a = set_regrow(w, mask, 0.5, torch.Generator().manual_seed(3))
    b = set_regrow(w, mask, 0.5, torch.Generator().manual_seed(3))
    c = set_regrow(w, mask, 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert int(a.sum()) == 64


# --- config front -----------------------------------------------------------------------


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x))))))
        return self.fc2(torch.relu(self.fc1(x.mean((2, 3)))))


PRUNED = ["conv2", "conv3", "fc1"]
SPECS = [
    {"method": "magnitude", "sparsity": 0.6},
    {"method": "dynamic", "sparsity": 0.3},
    {"method": "n_m", "n": 2, "m": 4},
    {"method": "filter", "sparsity": 0.5},
    {"method": "channel", "sparsity": 0.25},
    {"method": "line", "sparsity": 0.7},
    {"method": "hybrid", "sparsity": 0.6, "channel_share": 0.5},
    {"method": "block", "sparsity": 0.5, "block": (4, 4)},
    {"method": "pe_wise", "sparsity": 0.5, "pe_rows": 4, "pe_cols": 8},
    {"method": "permuted_diagonal", "p": 4, "seed": 1},
    {"method": "block_circulant", "b": 4},
    {"method": "ternarize", "threshold_ratio": 0.7},
    {"method": "dropback", "k": 500, "init_decay": 0.9},
]


@pytest.mark.parametrize("spec", SPECS, ids=[s["method"] for s in SPECS])
def test_prune_model(spec: dict) -> None:
    torch.manual_seed(0)
    net = SmallNet()
    before = {n: m.weight.detach().clone() for n, m in net.named_modules() if hasattr(m, "weight")}
    masks = prune_model(net, PruningSpec(**spec))
    assert list(masks) == PRUNED
    assert torch.equal(net.conv1.weight, before["conv1"])  # skipped layers untouched
    assert torch.equal(net.fc2.weight, before["fc2"])
    for name, mask in masks.items():
        weight = getattr(net, name).weight
        assert mask.dtype == torch.bool and mask.shape == weight.shape
        assert not weight[~mask].any()
        if spec["method"] not in ("ternarize", "block_circulant"):
            assert torch.equal(weight, before[name] * mask)
    if spec["method"] == "magnitude":
        for mask in masks.values():
            assert int((~mask).sum()) == round(0.6 * mask.numel())
    if spec["method"] == "dropback":
        assert sum(int(m.sum()) for m in masks.values()) == 500
    if spec["method"] == "ternarize":
        for name in PRUNED:
            assert len(getattr(net, name).weight.unique()) <= 3
    if spec["method"] == "block_circulant":
        assert all(is_block_circulant(getattr(net, n).weight, 4) for n in PRUNED)
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize(("spec", "key", "message"), [
    ({"method": "permuted_diagonal", "p": 3}, "p",
     "layer 'conv2' (Conv2d, weight [16, 8, 3, 3]): output channels K = 16 must be divisible "
     "by p = 3"),
    ({"method": "block_circulant", "b": 16}, "b",
     "layer 'conv2' (Conv2d, weight [16, 8, 3, 3]): input channels C = 8 must be divisible "
     "by b = 16"),
    ({"method": "n_m", "n": 2, "m": 16}, "m",
     "layer 'conv2' (Conv2d, weight [16, 8, 3, 3]): input channels C = 8 must be divisible "
     "by m = 16"),
    ({"method": "pe_wise", "sparsity": 0.5, "pe_rows": 16, "pe_cols": 16}, "pe_cols",
     "layer 'conv2' (Conv2d, weight [16, 8, 3, 3]): C*R*S = 72 must be divisible by "
     "pe_cols = 16"),
    ({"method": "pe_wise", "sparsity": 0.5, "pe_rows": 32, "pe_cols": 1}, "pe_rows",
     "layer 'conv2' (Conv2d, weight [16, 8, 3, 3]): output channels K = 16 must be divisible "
     "by pe_rows = 32"),
    # a sparsity that rounds to every unit, or n = 0, leaves a layer no weight
    ({"method": "filter", "sparsity": 0.99}, "sparsity",
     "layer 'conv2' (Conv2d, weight [16, 8, 3, 3]): sparsity 0.99 prunes all 16 filters: no "
     "weight left"),
    ({"method": "n_m", "n": 0, "m": 4}, "n",
     "layer 'conv2' (Conv2d, weight [16, 8, 3, 3]): n = 0 keeps none of each group of m = 4: "
     "no weight left"),
    # an edge block would count as a whole one: the layer's sparsity would miss the target
    ({"method": "block", "sparsity": 0.5, "block": (4, 3)}, "block",
     "layer 'conv2' (Conv2d, weight [16, 8, 3, 3]): input channels C = 8 must be divisible "
     "by the block's 3 (block [4, 3]): edge blocks would miss the target sparsity"),
])
def test_a_layer_the_method_cannot_prune_is_named_before_any_weight_changes(
        spec: dict, key: str, message: str) -> None:
    """The shape checks read shapes only: on the meta device (as `desim check` runs them on
    the untrained model) they say what `prune_model` says, which changes no weight first."""
    net = SmallNet()
    with pytest.raises(ConfigError) as on_meta:
        check_layers(SmallNet().to("meta"), PruningSpec(**spec))
    before = [m.detach().clone() for m in net.parameters()]
    with pytest.raises(ConfigError) as pruning:
        prune_model(net, PruningSpec(**spec))
    assert on_meta.value.key == pruning.value.key == key
    assert on_meta.value.message == pruning.value.message == message
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


@pytest.mark.parametrize("spec", SPECS, ids=[s["method"] for s in SPECS])
def test_every_layer_that_prunes_passes_the_shape_checks(spec: dict) -> None:
    check_layers(SmallNet().to("meta"), PruningSpec(**spec))  # no error: test_prune_model


@pytest.mark.parametrize(("spec", "key"), [
    ({"method": "ternarize", "threshold_ratio": 100.0}, "threshold_ratio"),
    ({"method": "magnitude", "sparsity": 0.5, "ternary": True, "threshold_ratio": 100.0},
     "threshold_ratio"),
])
def test_a_pruning_that_leaves_a_layer_no_weight_is_refused(spec: dict, key: str) -> None:
    """By the values: TWN's threshold above every |w| of a layer. Such a layer is no
    network to simulate."""
    with pytest.raises(ConfigError, match="leaves it no non-zero weight") as err:
        prune_model(SmallNet(), PruningSpec(**spec))
    assert err.value.key == key


def test_one_shot_dropback_zeroes_the_untracked_only_where_they_decay() -> None:
    """Without training, DropBack keeps the k largest |w| over the pruned layers; Procrustes'
    decay (init_decay < 1) takes the untracked to the zeros they decay to, DropBack proper
    (1) leaves them their initial values, for its hardware to regenerate and compute."""
    torch.manual_seed(0)
    net = SmallNet()
    before = {n: getattr(net, n).weight.detach().clone() for n in PRUNED}
    masks = prune_model(net, PruningSpec(method="dropback", k=500))
    assert sum(int(m.sum()) for m in masks.values()) == 500
    assert all(torch.equal(getattr(net, n).weight, before[n]) for n in PRUNED)
    decayed = SmallNet()
    for n in PRUNED:
        getattr(decayed, n).weight.data.copy_(before[n])
    again = prune_model(decayed, PruningSpec(method="dropback", k=500, init_decay=0.9))
    assert all(torch.equal(again[n], masks[n]) for n in PRUNED)
    assert all(torch.equal(getattr(decayed, n).weight, before[n] * masks[n]) for n in PRUNED)


def test_prune_model_dense_and_no_skips() -> None:
    net = SmallNet()
    assert prune_model(net, PruningSpec(method="dense")) == {}
    spec = PruningSpec(method="magnitude", sparsity=0.5, skip_first_conv=False,
                       skip_last_linear=False)
    masks = prune_model(net, spec)
    assert list(masks) == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    assert int((~masks["conv1"]).sum()) == 108 and int((net.conv1.weight == 0).sum()) >= 108


def test_pruning_spec_validation() -> None:
    with pytest.raises(ValidationError):
        PruningSpec(method="magnitude", sparsity=0.5, colour="red")
    with pytest.raises(ValidationError):
        PruningSpec(method="magnitude", sparsity=1.0)
    with pytest.raises(ValidationError):
        PruningSpec(method="n_m", n=2)
    with pytest.raises(ValidationError):
        PruningSpec(method="n_m", n=5, m=4)
    with pytest.raises(ValidationError):
        PruningSpec(method="pe_wise", sparsity=0.5, pe_rows=4)
    with pytest.raises(ValidationError):
        PruningSpec(method="structured")
    with pytest.raises(ValidationError, match="not both"):  # which would be the target?
        PruningSpec(method="dropback", k=1000, sparsity=0.5)
    assert PruningSpec(method="dropback", k=1000).k == 1000
    assert PruningSpec(method="block", sparsity=0.5, block=(2, 4)).block == (2, 4)


@pytest.mark.parametrize("method", [{"method": "magnitude", "sparsity": 0.9},
                                    {"method": "n_m", "n": 2, "m": 4},
                                    {"method": "dropback", "sparsity": 0.9}])
def test_a_pruning_that_prunes_no_layer_is_refused(method):
    """A model whose one conv is its first and whose one linear its last (the sparsity
    probe): every method, skipping both by default, pruned nothing, and the run reported
    "magnitude 0.9" beside 0% sparse weights and a speedup. With the skips off, it prunes."""
    from mappings.pruning import prune_model

    def probe() -> nn.Module:
        return nn.Sequential(nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8, 4))

    with pytest.raises(ConfigError, match="prunes no layer of the model: its only conv and "
                                          "linear layers are those skip_first_conv and "
                                          "skip_last_linear leave dense") as err:
        prune_model(probe(), PruningSpec(**method))
    assert err.value.key == "skip_first_conv"
    masks = prune_model(probe(), PruningSpec(**method, skip_first_conv=False))
    assert list(masks) == ["0"]
