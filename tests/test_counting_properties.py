"""Property tests: the vectorized counts equal a brute-force count over every index tuple."""

import itertools
from dataclasses import replace
from unittest.mock import patch

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings import tiling
from mappings.capture import LayerCapture
from mappings.counting import BP, FF, WG, SkipPolicy
from mappings.formats import rle_padding
from mappings.planner import tile_phase
from mappings.target import HardwareView
from mappings.tiling import TileShape, _kernel_stats, _per_tile_pe, _per_tile_total

SPARSE = HardwareView(clusters=2, pes_per_cluster=3, buffer_bytes=4096, element_bytes=2,
                      local_buffer_bytes=256, skip_zero_weights=True,
                      skip_zero_activations=True, skip_zero_gradients=True,
                      skip_pruned_weight_gradients=True, channel_compaction=True,
                      weight_format="bitmap", activation_format="bitmap",
                      selector_entries_per_cycle=256.0)
DENSE = HardwareView(clusters=2, pes_per_cluster=3, buffer_bytes=4096, element_bytes=2,
                     local_buffer_bytes=256)


@st.composite
def layers(draw):
    n, c, k = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 5))
    r = draw(st.integers(1, 3))
    stride, pad = draw(st.integers(1, 2)), draw(st.integers(0, r // 2 + 1))
    h = draw(st.integers(r, 7))
    p = (h + 2 * pad - r) // stride + 1
    seed = draw(st.integers(0, 2**16))
    density = draw(st.sampled_from([0.2, 0.5, 0.9, 1.0]))
    g = torch.Generator().manual_seed(seed)

    def nz(*shape):
        return torch.rand(shape, generator=g) < density

    return LayerCapture("l", "conv", nz(n, c, h, h), nz(k, c, r, r), nz(n, k, p, p),
                        stride=stride, padding=pad)


def brute_force(layer: LayerCapture, phase: int, pruned_grads_unused: bool) -> tuple[int, int]:
    """(nominal, effectual) pairs of `phase`, by looping over every index tuple."""
    x, w, dy = layer.x_nz, layer.w_nz, layer.dy_nz
    n, c, h, _ = x.shape
    k, _, r, _ = w.shape
    p = dy.shape[2]
    nominal = effectual = 0
    for ni, ki, ci, ri, si, pi, qi in itertools.product(range(n), range(k), range(c), range(r),
                                                        range(r), range(p), range(p)):
        hi = pi * layer.stride - layer.padding + ri
        wi = qi * layer.stride - layer.padding + si
        if not (0 <= hi < h and 0 <= wi < h):
            continue
        nominal += 1
        xv, wv, dv = bool(x[ni, ci, hi, wi]), bool(w[ki, ci, ri, si]), bool(dy[ni, ki, pi, qi])
        effectual += {FF: xv and wv, BP: wv and dv,
                      WG: xv and dv and (wv or not pruned_grads_unused)}[phase]
    return nominal, effectual


@settings(max_examples=30, deadline=None)
@given(layers(), st.sampled_from([FF, BP, WG]), st.booleans(),
       st.sampled_from(["auto", "weight_stationary", "input_stationary"]))
def test_effectual_macs_equal_brute_force_for_every_phase_and_dataflow(layer, phase, static,
                                                                        dataflow):
    nominal, effectual = brute_force(layer, phase, static)
    for hw, policy in ((DENSE, SkipPolicy()), (SPARSE, SkipPolicy(True, True, True, True))):
        table, totals = tile_phase(layer, 0, phase, replace(hw, dataflow=dataflow), policy,
                                   pruned_grads_unused=static)
        assert totals["macs"] == nominal
        assert totals["effectual_macs"] == effectual
        assert table["effectual_macs"].sum() == effectual
        assert table["processed_macs"].sum() == totals["processed_macs"]
        if hw is DENSE:
            assert totals["processed_macs"] == nominal
        else:
            assert totals["processed_macs"] == effectual


@settings(max_examples=15, deadline=None)
@given(layers(), st.sampled_from([FF, BP, WG]))
def test_pes_past_a_blocks_outputs_stay_idle(layer, phase):
    """A cluster with more PEs than a tile's outputs leaves the extra PEs idle: a billion PEs
    give the same busiest-PE work as 4,096 (more than these layers' outputs in a tile), and
    cost no memory per PE."""
    for hw in (DENSE, SPARSE):
        policy = SkipPolicy(True, True, True, True) if hw is SPARSE else SkipPolicy()
        enough, _ = tile_phase(layer, 0, phase, replace(hw, pes_per_cluster=4096), policy,
                               pruned_grads_unused=True)
        huge, _ = tile_phase(layer, 0, phase, replace(hw, pes_per_cluster=10**9), policy,
                             pruned_grads_unused=True)
        assert huge["busiest_pe_macs"].tolist() == enough["busiest_pe_macs"].tolist()


@st.composite
def count_maps_and_shapes(draw):
    """A random count map (A, I, R, L), a tile shape over it and a cluster geometry."""
    a, n_img, n_rows, length = (draw(st.integers(1, 9)), draw(st.integers(1, 4)),
                                draw(st.integers(1, 9)), draw(st.integers(1, 12)))
    counts = torch.randint(0, 40, (a, n_img, n_rows, length),
                           generator=torch.Generator().manual_seed(draw(st.integers(0, 999))),
                           dtype=torch.int32)
    rows = draw(st.integers(1, n_rows))
    images = draw(st.integers(1, n_img)) if rows == n_rows else 1
    shape = TileShape(draw(st.integers(1, a)), images, rows)
    hw = HardwareView(clusters=draw(st.integers(1, 4)), pes_per_cluster=draw(st.integers(1, 8)),
                      buffer_bytes=4096, element_bytes=2)
    return counts, shape, hw


def dealt_by_loop(counts: torch.Tensor, shape: TileShape, hw: HardwareView
                  ) -> tuple[list[list[int]], list[list[int]]]:
    """Busiest PE and total of every tile (channel block x row block), by dealing each
    output in a loop as tiling's docstring says: a tile's ka channels go to the clusters in
    runs of ceil(ka / clusters), and PE p of a cluster takes the row block's outputs p,
    p + P, p + 2P, ... of each of its channels; where a full row block has fewer outputs
    (n) than the cluster has PEs (P), its PEs form P // n groups of n, the cluster's j-th
    channel dealt to group j mod groups (`_pe_groups`)."""
    a, n_img, n_rows, length = counts.shape
    if shape.rows >= n_rows:   # blocks of whole images
        blocks = [[(i, r) for i in range(i0, min(i0 + shape.images, n_img))
                   for r in range(n_rows)] for i0 in range(0, n_img, shape.images)]
    else:                      # runs of rows of one image
        blocks = [[(i, r) for r in range(r0, min(r0 + shape.rows, n_rows))]
                  for i in range(n_img) for r0 in range(0, n_rows, shape.rows)]
    clusters = min(hw.clusters, shape.ka)
    per_cluster = -(-shape.ka // clusters)
    used = min(hw.pes_per_cluster, len(blocks[0]) * length)  # a group's PEs
    groups = min(hw.pes_per_cluster // used, per_cluster)
    busiest, total = [], []
    for c0 in range(0, a, shape.ka):
        busiest.append([]), total.append([])
        for block in blocks:
            work: dict = {}
            for ch in range(c0, min(c0 + shape.ka, a)):
                for pos, (i, r) in enumerate((i, r) for i, r in block for _ in range(length)):
                    group = (ch - c0) % per_cluster % groups
                    pe = ((ch - c0) // per_cluster, group * used + pos % used)
                    work[pe] = work.get(pe, 0) + int(counts[ch, i, r, pos % length])
            busiest[-1].append(max(work.values()))
            total[-1].append(sum(work.values()))
    return busiest, total


@settings(max_examples=150, deadline=None)
@given(count_maps_and_shapes())
def test_per_tile_counts_equal_dealing_each_output_in_a_loop(case):
    """The tile search's vectorized busiest PE and totals (`_per_tile_pe`, through its
    phase cache too, and `_per_tile_total`) are those of dealing every output in a loop;
    `_per_tile_total` by both of its routes (numpy's on small maps, torch views on large:
    here every map takes each), of the map as int32 and as int64, and of a 0/1 map as
    bool."""
    counts, shape, hw = case
    busiest, total = dealt_by_loop(counts, shape, hw)
    for cache in (None, {}):
        got_busiest, got_total = _per_tile_pe(counts, shape, hw, cache)
        assert got_busiest.tolist() == busiest and got_total.tolist() == total
    ones = counts % 2 == 1
    _, ones_total = dealt_by_loop(ones.to(torch.int32), shape, hw)
    for small in (tiling.SMALL_RUNS, 0):
        with patch.object(tiling, "SMALL_RUNS", small):
            assert _per_tile_total(counts, shape).tolist() == total
            assert _per_tile_total(counts.to(torch.int64), shape).tolist() == total
            got = _per_tile_total(ones, shape)
            assert got.dtype == np.int64 and got.tolist() == ones_total


@settings(max_examples=30, deadline=None)
@given(layers(), st.sampled_from([FF, BP, WG]), st.booleans())
def test_a_reduction_dealt_to_the_clusters_counts_what_a_whole_one_does(layer, phase, static):
    """Dealt to the clusters where it can be (`partition: reduction`), a phase's nominal,
    effectual and processed MACs are those of the whole reduction (brute force), and each
    tile's partial sums are one an output from each active cluster, all but the first added
    at the buffer."""
    nominal, effectual = brute_force(layer, phase, static)
    for hw, policy in ((DENSE, SkipPolicy()), (SPARSE, SkipPolicy(True, True, True, True))):
        table, totals = tile_phase(layer, 0, phase, replace(hw, partitions=("reduction",)),
                                   policy, pruned_grads_unused=static)
        assert totals["macs"] == nominal
        assert totals["effectual_macs"] == effectual == table["effectual_macs"].sum()
        assert table["processed_macs"].sum() == totals["processed_macs"]
        dealt = table[table["dealt"] == 2]
        outputs = dealt["gather_bytes"] // (dealt["active_clusters"] * hw.psum_bytes)
        assert (dealt["reduced_psums"] == (dealt["active_clusters"] - 1) * outputs).all()
        assert (dealt["multicast_bytes"] == 0).all()


@settings(max_examples=40, deadline=None)
@given(layers())
def test_a_reduction_s_busiest_pe_is_that_of_dealing_each_slice_in_a_loop(layer):
    """FF in one tile of every channel and image, its input channels that have weights
    (channel compaction leaves out the others, whose X no output needs) dealt to the
    clusters in even slices (one a cluster, fewer when there are fewer): the tile's busiest
    PE is the largest, over the slices, of each PE's effectual MACs when PE p of the
    slice's cluster takes the outputs p, p + P, ... of every channel (in groups of as many
    PEs as the tile has positions where it has fewer than P, channel j to group j mod
    groups: `tiling._pe_groups`; j counts the output channels channel compaction keeps,
    those with work), the MACs counted by looping over every index tuple of the slice."""
    from unittest import mock

    from mappings import planner

    x, w = layer.x_nz, layer.w_nz
    n, c, h, _ = x.shape
    k, _, r, _ = w.shape
    p = layer.dy_nz.shape[2]
    hw = replace(SPARSE, partitions=("reduction",), buffer_bytes=1 << 20)
    active = [ci for ci in range(c) if w[:, ci].any()] or list(range(c))
    count = min(hw.clusters, len(active))
    cuts = [i * len(active) // count for i in range(count + 1)]
    used = min(hw.pes_per_cluster, n * p * p)  # a group's PEs

    def pairs(ki: int, ci: int, ni: int, pi: int, qi: int) -> int:
        """The effectual pairs of output (ki, ni, pi, qi) over input channel ci."""
        total = 0
        for ri, si in itertools.product(range(r), range(r)):
            hi = pi * layer.stride - layer.padding + ri
            wi = qi * layer.stride - layer.padding + si
            total += bool(0 <= hi < h and 0 <= wi < h and x[ni, ci, hi, wi]
                          and w[ki, ci, ri, si])
        return total

    outputs = list(itertools.product(range(n), range(p), range(p)))
    # the output channels channel compaction keeps (those with work), dealt in turn
    kept = [ki for ki in range(k)
            if any(pairs(ki, ci, *o) for ci in active for o in outputs)]
    groups = min(hw.pes_per_cluster // used, max(1, len(kept)))
    busiest = 0
    for c0, c1 in zip(cuts, cuts[1:], strict=False):
        work = [0] * hw.pes_per_cluster
        for j, ki in enumerate(kept):
            for pos, o in enumerate(outputs):
                work[j % groups * used + pos % used] += sum(pairs(ki, ci, *o)
                                                            for ci in active[c0:c1])
        busiest = max(busiest, max(work))
    shape = TileShape(k, n, p, False, "reduction")
    with mock.patch.object(planner, "choose_tile", lambda *a, **kw: [shape]):
        table, _ = tile_phase(layer, 0, FF, hw, SkipPolicy(True, True, True, True),
                              pruned_grads_unused=True)
    if not len(table):  # channel compaction: no output channel has work
        assert busiest == 0
    elif count > 1:
        assert table["dealt"].tolist() == [2] and table["active_clusters"].tolist() == [count]
        assert table["busiest_pe_macs"].tolist() == [busiest]


PRICED = dict(mac_pj=1.0, dram_pj_per_byte=20.0, glb_pj_per_byte=1.0, local_pj_per_byte=0.5,
              noc_pj_per_byte=2.0, noc_multicast_pj_per_byte=8.0, static_pj_per_cycle=3.0,
              psum_add_pj=0.4, dram_bytes_per_cycle=8.0, noc_port_bytes_per_cycle=4.0)


@settings(max_examples=60, deadline=None)
@given(layers(), st.sampled_from([FF, BP, WG]), st.sampled_from(["edp", "delay", "energy"]),
       st.booleans(), st.integers(2, 4))
def test_the_floor_under_a_dealt_reduction_is_below_its_plan(layer, phase, objective, sparse,
                                                             clusters):
    """`planner._across_floor`, by which the mapper skips counting a reduction's slices when
    it cannot win, is never above the objective of the plan's own rows (a design that deals
    only reductions takes that plan, so its rows are there to compare)."""
    from mappings import pipeline, planner

    hw = replace(SPARSE if sparse else DENSE, clusters=clusters, partitions=("reduction",),
                 objective=objective, **PRICED)
    policy = SkipPolicy(True, True, True, True) if sparse else SkipPolicy()
    table, totals = tile_phase(layer, 0, phase, hw, policy, pruned_grads_unused=True)
    if not len(table) or not (table["dealt"] == 2).all():
        return  # nothing to compute, or no reduction to deal (one slice, a batch that splits)
    outputs = int((table["gather_bytes"] // (table["active_clusters"] * hw.psum_bytes)).sum())
    floor = planner._across_floor(totals, outputs, int(table["active_clusters"][0]), hw)
    assert floor <= pipeline.plan_key(table, hw, 1)[0] * (1 + 1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.sampled_from([(1, 1), (1, 3), (3, 3)]),
       st.sampled_from(["bitmap", "csr", "rle"]), st.integers(0, 999))
def test_kernel_statistics_count_each_kernel(k, c, kernel_shape, fmt, seed):
    """A WG's output statistics per kernel (`_kernel_stats`): its non-zeros, its rows with
    any and, in run-length coding only, its padding entries, counted kernel by kernel; a
    linear layer's (1 x 1 kernels) are its weight map itself, as bool."""
    w = torch.rand(k, c, *kernel_shape, generator=torch.Generator().manual_seed(seed)) < 0.5
    nnz, lines, rle = _kernel_stats(w, fmt)
    assert (rle is None) == (fmt != "rle")
    for a, ch in itertools.product(range(k), range(c)):
        kernel = w[a, ch]
        assert int(nnz[a, 0, ch, 0]) == int(kernel.sum())
        assert int(lines[a, 0, ch, 0]) == int(kernel.any(1).sum())
        if rle is not None:
            assert int(rle[a, 0, ch, 0]) == int(rle_padding(kernel.reshape(1, -1)).sum())
    if kernel_shape == (1, 1):
        assert nnz.dtype == torch.bool and nnz.data_ptr() == w.data_ptr()
