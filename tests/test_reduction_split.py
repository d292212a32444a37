"""Reduction splits: a layer whose operands cannot share the buffer is cut along its reduction
(FF: input channels, BP: output channels, WG: images), chunks outermost, so that each operand
is read from DRAM once and the partial sums stay on chip. Closed-form byte counts."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from desim.errors import ConfigError
from desim.events import empty_table
from mappings.capture import LayerCapture
from mappings.counting import BP, FF, WG, SkipPolicy
from mappings.planner import (
    INNER,
    KEPT,
    MIN_CHUNK_CHANNELS,
    _count_maps,
    _reduction_plans,
    _slice_rows,
    _tile_plan,
    _wg_parts,
    _wg_split,
    plan_key,
    tile_phase,
)
from mappings.target import HardwareView
from mappings.tiling import _Window, phase_shape
from tests.test_counting import dense_capture

# A deep layer's shape: 3x3 conv, 64 -> 64 channels, 4x4 maps, one image: W is 72 KiB at fp16,
# X, Y, dY and dX 2 KiB each. 6,000 bytes a tile: the whole reduction holds 4 output channels'
# weights (4.5 KiB) beside X only in part, so it reads W twice; split in input channels
# (FF) or output channels (BP), each chunk's weights stream past X's chunk, once.
CH, H = 64, 4
W_BYTES, MAP_BYTES = CH * CH * 9 * 2, CH * H * H * 2
# DRAM 8 B and the NoC port 32 B a cycle; prices near those of the 28 nm tables (pJ).
HW = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=6000, element_bytes=2,
                  dram_bytes_per_cycle=8.0, noc_port_bytes_per_cycle=32.0, mac_pj=0.75,
                  dram_pj_per_byte=46.0, glb_pj_per_byte=0.6, local_pj_per_byte=0.3,
                  noc_pj_per_byte=8.0, noc_multicast_pj_per_byte=40.0)


def deep_layer():
    return dense_capture(nn.Conv2d(CH, CH, 3, padding=1, bias=False), n=1, h=H)


@pytest.mark.parametrize("phase", [FF, BP])
def test_split_reduction_reads_each_operand_once_and_keeps_partial_sums_on_chip(phase):
    table, totals = tile_phase(deep_layer(), 0, phase, HW, SkipPolicy(), pruned_grads_unused=True)
    assert totals["macs"] == totals["effectual_macs"] == table["macs"].sum()
    assert totals["macs"] == CH * CH * (3 * H - 2) ** 2  # in-bounds pairs, padding 1
    # FF: W and X once, Y written once; BP: W and dY once, dX written once
    assert table["dram_read_bytes"].sum() == W_BYTES + MAP_BYTES
    assert table["dram_write_bytes"].sum() == MAP_BYTES
    # the plan taken cuts the reduction into its finest chunks, 8 channels each: every
    # chunk sends a whole Y (dX) of sums back over the NoC, 7 partial and the final one
    chunks = CH // MIN_CHUNK_CHANNELS
    assert table["gather_bytes"].sum() == chunks * MAP_BYTES


def test_the_whole_reduction_stays_when_its_operands_fit():
    """Room for both operands: each is read from DRAM once and Y written once (the plan
    may still cut the reduction, its partial sums kept on chip, for tiles that pipeline)."""
    roomy = HardwareView(**{**HW.__dict__, "buffer_bytes": 1 << 20})
    table, _ = tile_phase(deep_layer(), 0, FF, roomy, SkipPolicy(), pruned_grads_unused=True)
    assert table["dram_read_bytes"].sum() == W_BYTES + MAP_BYTES
    assert table["dram_write_bytes"].sum() == MAP_BYTES


def test_wg_chunks_outermost_write_dw_once_and_read_no_more_than_chunks_innermost():
    n, c, k, r, h = 4, 3, 8, 3, 10
    layer = dense_capture(nn.Conv2d(c, k, r, bias=False), n=n, h=h)
    small = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=2600, element_bytes=2)
    table, _ = tile_phase(layer, 0, WG, small, SkipPolicy(), pruned_grads_unused=True)
    parts = _wg_parts(layer, _wg_split(layer, small))  # the chunks tile_phase made
    assert len(parts) > 1
    maps = [_count_maps(p, WG, small, SkipPolicy(), True) for p in parts]
    shaped = [phase_shape(p, WG, small) for p in parts]
    channels = torch.arange(k)
    plans = {order: _tile_plan(parts, maps, shaped, channels, order, 0, WG, small, SkipPolicy(),
                               "test", True, 0, {})[0] for order in (INNER, KEPT)}
    dw = k * c * r * r * 2
    for order, plan in plans.items():
        assert plan["effectual_macs"].sum() == n * k * c * r * r * (h - r + 1) ** 2, order
        assert plan["dram_write_bytes"].sum() == dw, order  # psums never reach DRAM
    assert plans[KEPT]["dram_read_bytes"].sum() <= plans[INNER]["dram_read_bytes"].sum()
    assert plan_key(table, small, len(parts)) <= min(plan_key(p, small, len(parts))
                                                      for p in plans.values())


@pytest.mark.parametrize("accumulator_bytes", [0, 4])
def test_partial_sums_travel_at_the_accumulators_width(accumulator_bytes):
    """WG in image chunks, chunks outermost, sums kept on chip: every chunk but the last
    sends dW's partial sums back to the buffer, dense, at the accumulator's width (0: the
    fp16 element's); the last sends the final dW, at the element's width, and writes it."""
    n, c, k, r, h = 4, 3, 8, 3, 10
    layer = dense_capture(nn.Conv2d(c, k, r, bias=False), n=n, h=h)
    hw = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=2600, element_bytes=2,
                      accumulator_bytes=accumulator_bytes)
    parts = _wg_parts(layer, _wg_split(layer, hw))
    maps = [_count_maps(p, WG, hw, SkipPolicy(), True) for p in parts]
    shaped = [phase_shape(p, WG, hw) for p in parts]
    kept, *_ = _tile_plan(parts, maps, shaped, torch.arange(k), KEPT, 0, WG, hw, SkipPolicy(),
                         "test", True, 0, {})
    dw_elems, chunks = k * c * r * r, len(parts)
    psum = dw_elems * (accumulator_bytes or 2)
    assert chunks > 1
    assert kept["dram_write_bytes"].sum() == dw_elems * 2
    assert kept["gather_bytes"].sum() == dw_elems * 2 + (chunks - 1) * psum


@pytest.mark.parametrize(("pad", "stride", "dilation", "r"), [
    (0, 1, 1, 3), (1, 1, 1, 3), (2, 2, 1, 3), (3, 1, 2, 3), (1, 3, 1, 3),
    (2, 1, 1, 1), (4, 1, 1, 3), (3, 2, 1, 1)])   # the last three: runs wholly in the padding
def test_a_run_of_rows_is_the_padded_images_rows(pad, stride, dilation, r):
    """WG's runs of output rows (`_slice_rows`) carry exactly the rows of the padded input
    they read, padding marked invalid: cut before padding (a large image has thousands of
    runs), they equal the rows cut out of the whole padded image, a run that lies wholly in
    the padding too."""
    torch.manual_seed(2)
    n, c, k, h = 2, 3, 4, 11
    x = torch.rand(n, c, h, h) < 0.5
    p = (h + 2 * pad - dilation * (r - 1) - 1) // stride + 1
    layer = LayerCapture("rows", "conv", x, torch.ones(k, c, r, r, dtype=torch.bool),
                         torch.rand(n, k, p, p) < 0.5, stride=stride, padding=pad,
                         dilation=dilation)
    padded = torch.nn.functional.pad(x.to(torch.uint8), (pad,) * 4).bool()
    inside = torch.nn.functional.pad(torch.ones(n, c, h, h, dtype=torch.uint8), (pad,) * 4).bool()
    for image in range(n):
        for size in (1, 2, p):
            for p0 in range(0, p, size):
                p1 = min(p0 + size, p)
                part = _slice_rows(layer, image, p0, p1)
                h0, h1 = p0 * stride, (p1 - 1) * stride + (r - 1) * dilation + 1
                assert torch.equal(part.x_nz, padded[image:image + 1, :, h0:h1])
                assert torch.equal(part.x_valid, inside[image:image + 1, :, h0:h1])
                assert torch.equal(part.dy_nz, layer.dy_nz[image:image + 1, :, p0:p1])
                assert part.padding == 0
    assert len(_wg_parts(layer, ("rows", 2))) == n * -(-p // 2)


def test_a_wg_split_in_runs_of_rows_is_sized_by_its_widest_run():
    """A 3x3, padding-1 conv's WG in runs of one output row on a buffer of 460 bytes: the
    first run's window holds 2 of the image's rows (the padding above), every other run's
    3. Smallest tile, 4 output channels x 1 input channel at fp16: dY 4 x 32 x 2 = 256 B,
    dW 4 x 9 x 2 = 72 B, X 2 x 32 x 2 = 128 B in the first run (456, fits) and 192 B in the
    others (520, does not). Sized by the first run, `desim check` passed it and the run
    failed, blaming a bitmap among dense formats; now the check refuses it."""
    from mappings.planner import _widest_wg_part, geometry_misfit

    layer = LayerCapture(name="L", kind="conv", x_nz=torch.ones(1, 8, 32, 32, dtype=torch.bool),
                         w_nz=torch.ones(16, 8, 3, 3, dtype=torch.bool),
                         dy_nz=torch.ones(1, 16, 32, 32, dtype=torch.bool), padding=1)
    hw = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=460, element_bytes=2)
    widest = _widest_wg_part(layer, ("rows", 1))
    assert widest.x_valid.sum().item() == 8 * 3 * 32  # a middle run's three rows
    assert _widest_wg_part(layer, ("images", 1)).x_nz.shape[0] == 1
    misfit = geometry_misfit(layer, WG, hw)
    assert misfit is not None and "layer L WG" in misfit.message
    with pytest.raises(ConfigError) as err:
        tile_phase(layer, 0, WG, hw, SkipPolicy(), pruned_grads_unused=True)
    assert "bitmap" not in err.value.message
    roomy = replace(hw, buffer_bytes=520)  # the middle runs' smallest tile fits: mapped
    assert geometry_misfit(layer, WG, roomy) is None
    table, _ = tile_phase(layer, 0, WG, roomy, SkipPolicy(), pruned_grads_unused=True)
    assert table["held_bytes"].max() <= 520


def test_the_objective_ranks_plans_by_its_own_estimate():
    slow_lean = empty_table(1)
    fast_hungry = slow_lean.copy()
    slow_lean["busiest_pe_macs"] = 1000          # 1,000 cycles, 10 bytes of DRAM
    slow_lean["dram_read_bytes"] = 10
    fast_hungry["busiest_pe_macs"] = 500         # 500 cycles, 400 bytes of DRAM
    fast_hungry["dram_read_bytes"] = 400
    prices = dict(clusters=1, pes_per_cluster=1, buffer_bytes=1, element_bytes=2,
                  dram_bytes_per_cycle=1.0, dram_pj_per_byte=10.0)
    for objective, winner in (("delay", "fast"), ("energy", "slow"), ("edp", "slow")):
        hw = HardwareView(**prices, objective=objective)
        fast, slow = plan_key(fast_hungry, hw, 1), plan_key(slow_lean, hw, 1)
        assert (fast < slow) == (winner == "fast"), objective
    # one tile overlaps nothing: its read, then its MACs. edp: (10 + 1,000) cycles x 100 pJ
    # against (400 + 500) x 4,000 pJ
    assert plan_key(slow_lean, HardwareView(**prices), 1)[0] == 1010 * 100.0
    assert plan_key(fast_hungry, HardwareView(**prices), 1)[0] == 900 * 4000.0


@pytest.mark.parametrize("stride,pad,kernel,dilation", [(1, 1, 3, 1), (1, 0, 3, 1), (2, 1, 3, 1),
                                                        (2, 3, 7, 1), (1, 2, 3, 2), (1, 0, 1, 1)])
def test_bp_reads_exactly_the_dy_rows_each_block_of_dx_rows_needs(stride, pad, kernel, dilation):
    # dX[h] sums dY[p] W[r] over h = p * stride - pad + r * dilation: brute force the rows
    h = 12
    layer = dense_capture(nn.Conv2d(2, 2, kernel, stride, pad, dilation, bias=False), n=1, h=h)
    p_rows = layer.dy_nz.shape[2]
    win = _Window(BP, layer)
    for r0 in range(h):
        for r1 in range(r0 + 1, h + 1):
            need = {p for p in range(p_rows) for r in range(kernel) for x in range(r0, r1)
                    if x == p * stride - pad + r * dilation}
            h0, h1 = win(np.array([r0]), np.array([r1]))
            if need and dilation == 1:
                assert (h0[0], h1[0]) == (min(need), max(need) + 1), (r0, r1)
            elif need:  # dilated: a clipped edge may hold a row the gaps skip
                assert min(need) - dilation < h0[0] <= min(need), (r0, r1)
                assert max(need) < h1[0] <= max(need) + dilation, (r0, r1)
            else:
                assert h1[0] <= h0[0], (r0, r1)


def test_every_wg_image_chunking_counts_what_the_whole_batch_counts():
    # WG is offered the fewest image chunks that fit and two, four and eight times as many
    # (so a chunk's share of dY may fit the clusters' local buffers); each plan, in each
    # order, does the same MACs and writes dW once.
    n, c, k, r, h = 8, 16, 4, 3, 8
    layer = dense_capture(nn.Conv2d(c, k, r, padding=1, bias=False), n=n, h=h)
    hw = HardwareView(**{**HW.__dict__, "buffer_bytes": 12 * 1024, "local_buffer_bytes": 1024})
    plans = _reduction_plans(layer, WG, hw, SkipPolicy(), True, 0)
    assert [len(parts) for parts, _, _ in plans] == [1, 2, 4, 8]
    macs = k * c * n * (3 * h - 2) ** 2  # in-bounds pairs, padding 1
    for parts, maps, orders in plans:
        shaped = [phase_shape(p, WG, hw) for p in parts]
        for order in orders:
            table, _, out_bytes, *_ = _tile_plan(parts, maps, shaped, torch.arange(k), order,
                                                0, WG, hw, SkipPolicy(), "test", True, 0, {})
            assert out_bytes == k * c * r * r * 2, order  # dW, dense, once
            assert table["macs"].sum() == table["effectual_macs"].sum() == macs, order
            assert table["dram_write_bytes"].sum() >= k * c * r * r * 2, order
            if order != "spilled":
                assert table["dram_write_bytes"].sum() == k * c * r * r * 2, order


@pytest.mark.parametrize("n, chunks", [(32, [1, 2, 4, 8]), (20, [1, 2, 10]), (6, [1, 2, 6])])
def test_wg_is_offered_at_most_eight_times_the_fewest_image_chunks(n, chunks):
    # Every chunk of every plan keeps count maps the size of dW: the finest plan offered
    # cuts the batch that fits into eight chunks at most (a batch of 32 into chunks of 4
    # images, not 32 of one), each plan's chunks whole runs of the finest (20 images:
    # chunks of 20, 10 and 2; 5 is not a run of 2s).
    layer = dense_capture(nn.Conv2d(4, 4, 3, padding=1, bias=False), n=n, h=4)
    hw = HardwareView(**{**HW.__dict__, "buffer_bytes": 1 << 20})
    plans = _reduction_plans(layer, WG, hw, SkipPolicy(), True, 0)
    assert [len(parts) for parts, _, _ in plans] == chunks
    assert [parts[0].dy_nz.shape[0] for parts, _, _ in plans] == [n // c for c in chunks]


def test_a_chunk_made_dram_bound_by_its_spilled_sums_takes_the_tile_that_reads_less():
    """A 64 -> 64 3x3 conv (4 images of 16 x 16, dense, fp16) on a 48 KiB tile budget,
    ranked by delay. Alone, the tile that re-reads X per weight block wins: its extra DRAM
    reads hide under the NoC port's time. A chunk whose spilled partial sums make it
    DRAM-bound must count every DRAM byte: it takes the input-stationary tile, which reads
    fewer bytes from DRAM (the tables built by tile_part say so, not only the estimate)."""
    from mappings.planner import tile_part
    from mappings.tiling import choose_tile

    conv = nn.Conv2d(64, 64, 3, padding=1, bias=False)
    torch.manual_seed(0)
    layer = dense_capture(conv, n=4, h=16)
    hw = HardwareView(clusters=4, pes_per_cluster=4, buffer_bytes=48 * 1024, element_bytes=2,
                      local_buffer_bytes=1024, dram_bytes_per_cycle=8,
                      noc_port_bytes_per_cycle=8, objective="delay")
    ps, win = phase_shape(layer, FF, hw)
    alone = choose_tile(ps, win, 64, 4, 16, 16, hw, "t", weights=True)[0]
    bound = choose_tile(ps, win, 64, 4, 16, 16, hw, "t", weights=True, psums_dram=1e7)[0]
    assert (alone.rows_outer, bound.rows_outer) == (False, True)
    maps = _count_maps(layer, FF, hw, SkipPolicy(), True)

    def dram(shape):
        table = tile_part(layer, (ps, win), 0, FF, hw, SkipPolicy(), maps,
                          torch.arange(64), shape, pruned_grads_unused=True, last=True,
                          reuse=True)[0]
        return int(table["dram_read_bytes"].sum())

    assert dram(bound) < dram(alone)


# Views for the plan floor: the deep layer's (splits win), a roomy one (the whole reduction
# wins, splits only add partial sums), every objective, index matching and load balancing.
FLOOR_VIEWS = [
    HW,
    HardwareView(**{**HW.__dict__, "buffer_bytes": 1 << 20}),
    HardwareView(**{**HW.__dict__, "buffer_bytes": 1 << 20, "objective": "delay"}),
    HardwareView(**{**HW.__dict__, "buffer_bytes": 1 << 20, "objective": "energy",
                    "static_pj_per_cycle": 5.0, "accumulator_bytes": 4}),
    HardwareView(**{**HW.__dict__, "buffer_bytes": 24 * 1024, "index_matching_bits": 8,
                    "index_scan_pj": 0.01, "index_match_pj": 0.02, "load_balance": True}),
]


def _between(hw: HardwareView, layer: LayerCapture, phase: int | str) -> HardwareView:
    """The view a WG is mapped on between its BP (`BP_WG`) and the next phase
    (`pipeline.Overlap`, the BP's rows standing in for that phase's); `hw` otherwise."""
    from mappings.pipeline import Overlap

    if phase != BP_WG:
        return hw
    bp, _ = tile_phase(layer, 0, BP, hw, SkipPolicy(), pruned_grads_unused=True)
    return replace(hw, overlap=Overlap.around(bp, bp, hw))


BP_WG = "WG after its BP"


@pytest.mark.parametrize("view", range(len(FLOOR_VIEWS)))
@pytest.mark.parametrize("phase", [FF, BP, WG, BP_WG])
def test_no_plan_is_estimated_below_its_floor(phase, view):
    """`_ChunkFloor`, before any chunk is tiled, bounds every plan's objective from below,
    in every order: a plan the search skips for its floor could not have won. So too for a
    WG ranked with its neighbours' tiles (`BP_WG`)."""
    from mappings.planner import _chunk_macs, _ChunkFloor, _prepared_plans

    layer = dense_capture(nn.Conv2d(CH, CH, 3, padding=1, bias=False), n=2, h=8)
    hw = _between(FLOOR_VIEWS[view], layer, phase)
    phase = WG if phase == BP_WG else phase
    _, channels, plans = _prepared_plans(
        _reduction_plans(layer, phase, hw, SkipPolicy(), True, 0), phase, hw)
    seen = 0
    for parts, maps, orders, shaped, _ in plans:
        for order in orders:
            try:
                table, *_ = _tile_plan(parts, maps, shaped, channels, order, 0, phase, hw,
                                       SkipPolicy(), "test", True, 0, {})
            except ConfigError:  # its smallest tile does not fit: the search skips it too
                continue
            floor = _ChunkFloor(maps, channels, order, hw, _chunk_macs(maps, 0)).floor()
            assert 0 < floor <= plan_key(table, hw, len(parts))[0], (len(parts), order)
            seen += len(parts) > 1 and order in (KEPT, "spilled")
    # roomy: 2, 4 and 8 chunks, kept and spilled (the tight buffer fits fewer)
    assert seen >= (1 if phase == WG or view == 0 else 6)


@pytest.mark.parametrize("phase", [FF, BP])
def test_plans_skipped_for_their_floor_leave_the_choice_unchanged(phase, monkeypatch):
    """With room for both operands the whole reduction wins, and the partial sums that
    8 chunks spill cost more than it on their own: the search does not tile that plan, and
    takes the same rows as a search that tiles every plan."""
    import mappings.planner as planner

    roomy = FLOOR_VIEWS[1]
    layer = dense_capture(nn.Conv2d(CH, CH, 3, padding=1, bias=False), n=2, h=8)
    tiled = []
    tile_plan = planner._tile_plan
    monkeypatch.setattr(planner, "_tile_plan",
                        lambda parts, *a, **k: tiled.append(len(parts)) or tile_plan(parts, *a,
                                                                                     **k))
    table, totals = tile_phase(layer, 0, phase, roomy, SkipPolicy(), pruned_grads_unused=True)
    assert sorted(tiled) == [1, 2, 2, 4, 4, 8]  # not 8 chunks spilled
    tiled.clear()
    monkeypatch.setattr(planner._ChunkFloor, "floor", lambda self: 0.0)
    every, every_totals = tile_phase(layer, 0, phase, roomy, SkipPolicy(),
                                     pruned_grads_unused=True)
    assert sorted(tiled) == [1, 2, 2, 4, 4, 8, 8]  # each split plan, kept and spilled
    assert table.tobytes() == every.tobytes() and totals == every_totals


@pytest.mark.parametrize("view", range(len(FLOOR_VIEWS)))
@pytest.mark.parametrize("phase", [FF, BP, WG, BP_WG])
def test_no_chunk_floor_is_above_its_plans_estimate(phase, view, monkeypatch):
    """`_ChunkFloor` bounds a plan's objective from below after each chunk it has tiled, for
    every plan, loop order and tile shape the search tries: a plan given up part-way
    through could not have won (a WG's between its neighbours too: `BP_WG`)."""
    import mappings.planner as planner

    floors, checked = [], []
    add = planner._ChunkFloor.add
    monkeypatch.setattr(planner._ChunkFloor, "add",
                        lambda self, table: floors.append(add(self, table)) or floors[-1])
    plan_rows = planner._plan_rows

    def every_chunk(parts, *args, **kwargs):   # tiled to the end, whatever the bound
        floors.clear()
        rows = plan_rows(parts, *args, **{**kwargs, "bound": np.inf})
        objective = plan_key(rows[0], hw, len(parts))[0]
        assert all(0 < f <= objective * (1 + 1e-12) for f in floors), (floors, objective)
        checked.append(len(floors))
        return rows

    layer = dense_capture(nn.Conv2d(CH, CH, 3, padding=1, bias=False), n=4, h=8)
    hw = _between(FLOOR_VIEWS[view], layer, phase)
    monkeypatch.setattr(planner, "_plan_rows", every_chunk)
    tile_phase(layer, 0, WG if phase == BP_WG else phase, hw, SkipPolicy(),
               pruned_grads_unused=True)
    assert sum(checked) >= 3  # floors taken after chunks (all but the last of each plan)


@pytest.mark.parametrize("phase", [FF, BP, WG, BP_WG])
def test_plans_given_up_part_way_leave_the_choice_unchanged(phase, monkeypatch):
    """Over the floor views, the search gives up some split plans after their first chunks
    (fewer chunk tilings) and takes byte-identical rows and totals to a search that tiles
    every chunk of every plan it starts."""
    import mappings.planner as planner

    layer = dense_capture(nn.Conv2d(CH, CH, 3, padding=1, bias=False), n=4, h=8)
    views = [_between(hw, layer, phase) for hw in FLOOR_VIEWS]
    phase = WG if phase == BP_WG else phase
    tilings = []
    tile_part = planner.tile_part
    monkeypatch.setattr(planner, "tile_part",
                        lambda *a, **k: tilings.append(1) or tile_part(*a, **k))

    def search() -> tuple[list, int]:
        tilings.clear()
        found = [tile_phase(layer, 0, phase, hw, SkipPolicy(), pruned_grads_unused=True)
                 for hw in views]
        return [(t.tobytes(), totals) for t, totals in found], len(tilings)

    chosen, fewer = search()
    monkeypatch.setattr(planner._ChunkFloor, "add", lambda self, table: 0.0)
    every, more = search()
    assert chosen == every
    assert fewer < more


@pytest.mark.parametrize("phase", [FF, BP, WG])
@pytest.mark.parametrize("view", [{"weight_format": f} for f in
                                  ("dense", "bitmap", "line_bitmap", "csr", "csc", "rle")]
                         + [{"weight_format": "line_bitmap", "weight_group": g} for g in (4, 5)]
                         + [{"activation_format": f} for f in ("bitmap", "rle")])
def test_a_coarse_chunks_summed_statistics_are_its_own(phase, view):
    """A plan's chunks are runs of the finest plan's; their operand statistics are taken as
    sums of those (`summed_phase_shape`), or made anew where a sum would differ (a line
    spanning two chunks, run-length coded weights): either way the chunk's own."""
    from mappings.planner import _slice, _slice_reduction
    from mappings.tiling import summed_phase_shape

    torch.manual_seed(1)
    n, c, k, h = 4, 24, 20, 6
    layer = LayerCapture("sparse", "conv", torch.rand(n, c, h, h) < 0.4,
                         torch.rand(k, c, 3, 3) < 0.3, torch.rand(n, k, h, h) < 0.5, padding=1)
    hw = HardwareView(**{**HW.__dict__, **view})
    size = (c, k, n)[phase]

    def part(lo: int, hi: int) -> LayerCapture:
        return _slice(layer, lo, hi) if phase == WG else _slice_reduction(layer, phase, lo, hi)

    finest = 1 if phase == WG else 8
    fine = {lo: phase_shape(part(lo, min(lo + finest, size)), phase, hw)
            for lo in range(0, size, finest)}
    for chunk in (2 * finest, 4 * finest, size):
        for lo in range(0, size, chunk):
            hi = min(lo + chunk, size)
            summed, win = summed_phase_shape(part(lo, hi), phase, hw,
                                             [fine[f] for f in range(lo, hi, finest)])
            own, own_win = phase_shape(part(lo, hi), phase, hw)
            for stat in ("elems", "nnz", "lines", "nz_lines", "rle_padding"):
                assert np.array_equal(getattr(summed.channel_operand, stat),
                                      getattr(own.channel_operand, stat)), stat
            assert summed.channel_operand.line_len == own.channel_operand.line_len
            assert torch.equal(summed.stream_nnz, own.stream_nnz)
            assert torch.equal(summed.stream_rle, own.stream_rle)
            assert (summed.stream_row_elems, summed.stream_line_len, summed.groups) == \
                (own.stream_row_elems, own.stream_line_len, own.groups)
            assert vars(win) == vars(own_win)


@pytest.mark.parametrize("phase", [FF, BP, WG])
def test_every_tile_of_a_split_plan_fits_its_half_of_the_buffer(phase):
    """A tile holds its operands as they come into the buffer (from DRAM, or read out to
    the clusters, whichever is more; spilled partial sums read back included) and its
    results as they are gathered (partial sums at the accumulator's 4 bytes): together no
    more than the room its plan says it needs, and that no more than the tile budget. Spilled
    sums had been given no room: a tile then held 1.3x its half (a 256 -> 512 conv on
    dense.yaml)."""
    from mappings.planner import SPILLED, _prepared_plans, output_room

    hw = HardwareView(**{**HW.__dict__, "accumulator_bytes": 4})
    layer = dense_capture(nn.Conv2d(CH, CH, 3, padding=1, bias=False), n=2, h=H)
    _, channels, plans = _prepared_plans(
        _reduction_plans(layer, phase, hw, SkipPolicy(), True, 0), phase, hw)
    assert (output_room(SPILLED, 2, hw), output_room(SPILLED, 3, hw), output_room(KEPT, 4, hw),
            output_room(INNER, 4, hw)) == (4 + 2, 4 + 4, 0, 0)
    spilled = 0
    for parts, maps, orders, shaped, _ in plans:
        for order in orders:
            try:
                table, _, _, need, *_ = _tile_plan(parts, maps, shaped, channels, order, 0,
                                                   phase, hw, SkipPolicy(), "test", True, 0,
                                                   {})
            except ConfigError:  # no tile of this plan fits: the search skips it too
                continue
            held = (np.maximum(table["dram_read_bytes"] + table["regenerated_bytes"],
                               table["glb_read_bytes"]) + table["gather_bytes"])
            assert held.max() <= need <= hw.buffer_bytes, (len(parts), order)
            assert table["held_bytes"].max() <= need, (len(parts), order)
            spilled += order == SPILLED and len(parts) > 1
    assert spilled > 0


def test_the_tile_search_of_chunks_innermost_moves_what_their_rows_move(monkeypatch):
    """WG of a 16 -> 4 3x3 conv on 8 images of 8 x 8 (dense, fp16), 6 KiB a tile: in 4
    chunks of 2 images, chunks innermost, the plan takes tiles of 8 input channels, 2 a
    chunk, 8 in all, each reading and sending both its blocks anew (24,576 B). The search
    estimates the same tiles and bytes for that shape. It had taken the first chunk alone,
    2 tiles and its blocks kept from tile to tile: on Trainer's WGs a shape 18x faster
    than its rows, which won the search and lost the plan to a worse one."""
    import mappings.tiling as tiling
    from mappings.planner import _prepared_plans

    layer = dense_capture(nn.Conv2d(16, 4, 3, padding=1, bias=False), n=8, h=8)
    hw = HardwareView(**{**HW.__dict__, "buffer_bytes": 6 * 1024, "local_buffer_bytes": 1024})
    _, channels, plans = _prepared_plans(_reduction_plans(layer, WG, hw, SkipPolicy(), True, 0),
                                         WG, hw)
    parts, maps, orders, shaped, _ = next(p for p in plans if len(p[0]) == 4)
    searched = []
    rank = tiling._rank
    monkeypatch.setattr(tiling, "_rank", lambda hw, time, moves, tail:
                        searched.append((moves, tail)) or rank(hw, time, moves, tail))
    table, *_, shape = _tile_plan(parts, maps, shaped, channels, INNER, 0, WG, hw,
                                  SkipPolicy(), "test", True, 0, {})
    assert (shape.ka, shape.rows, len(table)) == (4, 8, 8)
    dram = int(table["dram_read_bytes"].sum())
    sent = int(table["multicast_bytes"].sum() + table["unicast_bytes"].sum())
    assert dram == sent == 24_576
    estimates = {(m["dram"], m["multicast"] + m["unicast"]) for m, tail in searched
                 if tail[1:3] == (len(table), -shape.ka) and not tail[3]}
    assert estimates == {(dram, sent)}


@pytest.mark.parametrize("arch", ["dense.yaml", "trainer.yaml"])
@pytest.mark.parametrize("kib", [48, 64])
def test_no_tile_of_a_mapped_run_holds_more_than_its_half_of_the_buffer(kib, arch):
    """LeNet-5 at batch 4, dense data, with a 48 or 64 KiB buffer: its layers' plans split
    their reductions (partial sums kept and spilled). Every tile of every conv and linear
    phase holds no more than its half (`held_bytes`), and no less than its operands as they
    come in from DRAM and its results as they are gathered (where no partial sums are kept:
    those have a room of their own). trainer.yaml stores W and the maps in bitmaps, a bit
    an element on top of the values: dense data takes 1/16 more than the dense bytes the
    tile search sizes tiles by. Its tiles had held up to 1.04x their half (layer 2's FF at
    64 KiB: 21,352 B in 20,528)."""
    from mappings.mapper import map_workload
    from mappings.pruning import PruningSpec
    from mappings.workload import WorkloadSpec, capture_workload
    from tests.views import arch_view

    workload = capture_workload(WorkloadSpec(model="lenet5", batch=4, data="digits"),
                                PruningSpec(method="dense"))
    work = [w for w in map_workload(workload, arch_view(
        arch, f"global_buffer.capacity_kib={kib}")) if not w.on_vector_unit]
    assert any("spilled" in w.mapping for w in work) and any("kept" in w.mapping for w in work)
    for w in work:
        table = w.table
        assert table["held_bytes"].max() <= min(w.buffer_bytes, w.tile_buffer_bytes), w.name
        operands = table["dram_read_bytes"] + table["regenerated_bytes"]
        if "kept" not in w.mapping:
            assert (operands + table["gather_bytes"] <= table["held_bytes"]).all(), w.name


def test_a_tile_whose_bitmaps_overflow_its_half_is_cut_smaller():
    """FF of an 8 -> 8 3x3 conv on one dense 4 x 4 image at fp16. A tile of 4 output
    channels and the whole image holds 4 x 8 x 9 weights (576 B), X (8 x 16, 256 B) and 4
    channels of Y (128 B): 960 B stored dense. In bitmaps each adds a bit an element: 612 +
    272 + 136 = 1,020 B. In a 1,000 B half the dense design keeps that tile; the bitmap one
    had kept it too (the search sizes tiles by dense bytes): it now takes half the image's
    rows, 612 + 204 (3 rows of X, halo included) + 68 = 884 B."""
    layer = dense_capture(nn.Conv2d(8, 8, 3, padding=1, bias=False), n=1, h=4)
    held = {}
    for fmt in ("dense", "bitmap"):
        hw = HardwareView(**{**HW.__dict__, "buffer_bytes": 1000, "weight_format": fmt,
                             "activation_format": fmt})
        table, totals = tile_phase(layer, 0, FF, hw, SkipPolicy(), pruned_grads_unused=True)
        held[fmt] = (table["held_bytes"].tolist(), totals["tile_buffer_bytes"],
                     totals["mapping"].split(",")[0])
    assert held["dense"] == ([960, 960], 960, "4 ch x 1 image")
    assert held["bitmap"] == ([884] * 4, 884, "4 ch x 2 rows")


def test_a_buffer_that_fits_the_smallest_tile_dense_but_not_in_bitmaps_says_so():
    """The same conv in an 820 B half: its smallest tile, 4 channels x 1 row, takes 576 B
    of weights, 3 rows of X (192 B) and 4 x 4 outputs (32 B), 800 B dense; in bitmaps 612
    + 204 + 34 = 850 B. The dense design maps it; the bitmap one stops with a message that
    gives both sizes (it had said the tile needs 800 bytes of a budget it had shrunk)."""
    layer = dense_capture(nn.Conv2d(8, 8, 3, padding=1, bias=False), n=1, h=4)
    fmt = {"weight_format": "bitmap", "activation_format": "bitmap"}
    table, _ = tile_phase(layer, 0, FF, HardwareView(**{**HW.__dict__, "buffer_bytes": 820}),
                          SkipPolicy(), pruned_grads_unused=True)
    assert table["held_bytes"].max() == 800
    with pytest.raises(ConfigError,
                       match=r"the 820 bytes .* \(estimated at 800\) holds 850 as its formats"):
        tile_phase(layer, 0, FF, HardwareView(**{**HW.__dict__, "buffer_bytes": 820, **fmt}),
                   SkipPolicy(), pruned_grads_unused=True)


def test_a_wg_whose_tiles_overflow_as_stored_is_cut_into_finer_chunks():
    """ResNet-18's first WG at 224 x 224, batch 1, hybrid-pruned, on hppu_like.yaml (its
    maps in bitmaps, 256 KiB halves): the fewest chunks whose smallest tile fits at dense
    bytes are two runs of 56 output rows, whose smallest tile takes 253,344 B dense but
    269,570 B in bitmaps. The mapper stopped there (so `desim bench`'s whole run did); it
    now cuts the rows finer, until its tiles fit as stored."""
    from mappings.mapper import PhaseMapper
    from mappings.pruning import PruningSpec
    from mappings.workload import WorkloadSpec, capture_workload
    from tests.views import arch_view

    workload = capture_workload(WorkloadSpec(model="resnet18", num_classes=1000, batch=1,
                                             input_shape=[3, 224, 224], data="random"),
                                PruningSpec(method="hybrid", sparsity=0.7))
    layer = next(x for x in workload.layers if x.name == "features.0").unpack()
    hw = arch_view("hppu_like.yaml")
    policy = PhaseMapper(workload, hw).policy   # what the design skips, as the mapper reads it
    assert _wg_split(layer, hw) == ("rows", 56)
    table, totals = tile_phase(layer, 0, WG, hw, policy,
                               pruned_grads_unused=workload.pruned_grads_unused)
    assert totals["mapping"].endswith("4 reduction chunks, sums kept")
    assert table["held_bytes"].max() <= totals["tile_buffer_bytes"] <= hw.buffer_bytes


@pytest.mark.parametrize("split, batch, offered", [
    (16, 16, [16, 8, 4, 2]), (17, 17, [17, 8, 4, 2]), (25, 25, [25, 12, 6, 3]), (3, 3, [3, 1]),
    (17, 34, [8, 4, 2]), (16, 32, [16, 8, 4, 2])])
def test_wg_offers_the_whole_split_then_its_halvings(split, batch, offered):
    """WG's image chunks: `_wg_split`'s images, where they are the whole batch or a multiple
    of the finest chunk, then halvings down to an eighth that are. An odd batch of 17 or
    more had lost its whole-batch plan (17 is no multiple of 2), so a WG that fit whole was
    cut into 9 chunks of 2; at batch 34 a chunk of 17 would end inside a finest chunk of 2
    (offering it crashed the mapper). Every plan's maps sum the images it names."""
    from mappings.planner import _wg_chunk_sizes

    assert _wg_chunk_sizes(split, batch) == offered
    layer = dense_capture(nn.Conv2d(4, 4, 3, padding=1, bias=False), n=batch, h=4)
    roomy = replace(HW, buffer_bytes=1 << 20)
    plans = _reduction_plans(layer, WG, roomy, SkipPolicy(), True, 0, wg_split=("images", split))
    assert [len(parts) for parts, _, _ in plans] == [-(-batch // s) for s in offered]
    table, _ = tile_phase(layer, 0, WG, replace(HW, buffer_bytes=2800), SkipPolicy(),
                          pruned_grads_unused=True)  # maps, whatever the split it takes
    assert table["macs"].sum() == 4 * 4 * 100 * batch  # 3x3 in-bounds pairs of a 4x4 map
    whole_macs = _count_maps(layer, WG, roomy, SkipPolicy(), True)[0].sum()
    for parts, maps, _ in plans:
        assert sum(int(m[0].sum()) for m in maps) == whole_macs
        assert sum(part.dy_nz.shape[0] for part in parts) == batch
