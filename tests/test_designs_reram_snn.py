"""Bit-slice ReRAM crossbars and the STT/ITT spiking systolic array: closed forms, end to end.

Closed forms: ADC bits of a column from its largest partial sum, column sums of a hand-made
crossbar counted by brute force, ADC energy scaling, crossbar timing; STT keeps at most one
spike per window and leaves sparse trains alone; a systolic fold takes SCALE-Sim's
2 S_R + S_C + V - 2 cycles and a schedule the sum of its folds and neuron batches.
End to end: each example at tiny sizes, asserting the direction of its result.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from arch.reram import (
    ISAAC_ADC_8BIT_PJ,
    CrossbarJob,
    ReramConfig,
    ReramEnergyTable,
    crossbar_jobs,
)
from arch.reram import simulate as simulate_reram
from arch.snn import LayerSpikes, SnnArrayConfig, fold_cycles, schedule
from arch.snn import simulate as simulate_snn
from mappings.bitslice import (
    bit_slices,
    bits_for,
    bitslice_l1,
    dfp_step,
    layer_column_sums,
    quantize_magnitude,
)
from mappings.spikes import SnnLayer, rate_encode, row_fold_spikes, run, stt_encode, tw_spikes

ROOT = Path(__file__).resolve().parents[1]


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module          # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- bit slices and ADC bits
def test_bits_for_is_ceil_log2_of_max_plus_one():
    sums = torch.tensor([0, 1, 2, 3, 4, 7, 8, 255, 256, 384])
    expected = [math.ceil(math.log2(m + 1)) for m in sums.tolist()]
    assert bits_for(sums).tolist() == expected == [0, 1, 2, 2, 3, 3, 4, 8, 9, 9]


def test_dynamic_fixed_point_and_slices():
    w = torch.tensor([[255.0, -3.0, 64.0, 0.0]])
    assert dfp_step(w, 8) == 1.0                       # ceil(log2 255) = 8: step 2^0
    q, sign, step = quantize_magnitude(w, 8)
    assert q.tolist() == [[255, 3, 64, 0]] and sign.tolist() == [[1, -1, 1, 0]]
    s = bit_slices(q, 8, 2)                            # LSB first
    assert s[:, 0, 0].tolist() == [3, 3, 3, 3]
    assert s[:, 0, 2].tolist() == [0, 0, 0, 1]         # 64 = MSB slice 1
    assert (sum(s[k] << (2 * k) for k in range(4)) == q).all()
    assert float(bitslice_l1(w)) == 12 + 3 + 1          # slice values summed


def test_a_slice_of_zero_weights_needs_no_adc():
    """Weights that are multiples of 4 (largest 252, so the step is 1): slice 0 is zero
    everywhere, its columns always read 0 and need a 0-bit ADC, the others do not."""
    g = torch.Generator().manual_seed(0)
    w = 4.0 * torch.randint(-63, 64, (20, 300), generator=g)
    w[0, 0] = 252.0
    x = torch.rand((16, 300), generator=g)
    ls = layer_column_sums(w, x, rows=128, weight_bits=8, cell_bits=2, input_bits=8)
    assert int(ls.worst[0].max()) == 0 and int(ls.observed[0].max()) == 0
    assert bits_for(ls.observed[0]).max() == 0 and int(ls.slice_nonzero[0]) == 0
    assert bits_for(ls.worst[1:]).min() > 0


def test_dynamic_fixed_point_msb_slice_is_never_all_zero():
    """The step is set by the largest weight, whose magnitude lands in (128, 255]: its MSB
    slice is 2 or 3, so a column holding it needs >= 2 bits when its input bit is 1."""
    g = torch.Generator().manual_seed(2)
    for scale in (1e-3, 0.07, 3.0):
        w = torch.randn((50, 60), generator=g) * scale
        q, _, _ = quantize_magnitude(w, 8)
        assert 128 < int(q.max()) <= 255
        assert int(bit_slices(q, 8, 2)[3].max()) >= 2


def test_column_sums_of_a_hand_made_crossbar():
    """Integer weights and inputs at step 1 quantize exactly; column sums by brute force."""
    w = torch.tensor([[255.0, 0, 17, 3, 200],
                      [-40, 129, 0, -255, 6],
                      [1, 2, 3, 4, 5]])
    x = torch.tensor([[255.0, 1, 0, 7, 128],
                      [3, 255, 64, 0, 1]])
    rows = 2
    ls = layer_column_sums(w, x, rows=rows, weight_bits=8, cell_bits=2, input_bits=8)
    k, c = w.shape
    for s in range(4):
        for pol, keep in enumerate((w > 0, w < 0)):
            for g in range(math.ceil(c / rows)):
                for j in range(k):
                    idx = range(g * rows, min(c, (g + 1) * rows))
                    cell = {i: (int(abs(w[j, i])) >> (2 * s)) & 3 if keep[j, i] else 0
                            for i in idx}
                    worst = sum(cell.values())
                    seen = max(sum(cell[i] * ((int(x[v, i]) >> b) & 1) for i in idx)
                               for v in range(len(x)) for b in range(8))
                    assert int(ls.worst[s, pol, g, j]) == worst
                    assert int(ls.observed[s, pol, g, j]) == seen
                    assert int(bits_for(ls.observed[s, pol, g, j])) == \
                        math.ceil(math.log2(seen + 1))


def test_negative_inputs_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        layer_column_sums(torch.ones(2, 3), -torch.ones(1, 3), 128, 8, 2, 8)


# ---------------------------------------------------------------- crossbar energy and time
def test_adc_energy_scales_as_two_to_the_bits():
    t = ReramEnergyTable()
    assert t.adc_pj(8) == pytest.approx(16e-3 / (8 * 1.2e9) * 1e12) == ISAAC_ADC_8BIT_PJ
    assert t.adc_pj(3) == pytest.approx(ISAAC_ADC_8BIT_PJ / 32)
    assert t.adc_pj(9) == pytest.approx(2 * ISAAC_ADC_8BIT_PJ)
    assert t.adc_pj(0) == 0.0
    assert ReramConfig().full_range_bits == 9           # 128 rows x 3 = 384 -> 9 bits


def test_crossbar_jobs_and_timing_closed_form():
    cfg = ReramConfig(rows=128, cols=128)
    jobs = crossbar_jobs(0, 300, 200, 2, [3, 3, 3, 1], cfg)
    assert len(jobs) == 4 * 2 * 3 * 2                  # slices x polarities x row x col groups
    assert sorted({j.rows_used for j in jobs}) == [44, 128]
    assert sorted({j.cols_used for j in jobs}) == [72, 128]
    assert all(j.activations == 2 * 8 for j in jobs)
    # one crossbar: 16 reads of max(100 ns, 128 conversions x 9 bits x 104 ps)
    one = CrossbarJob(0, 3, 128, 128, 16, 9)
    res = simulate_reram([[one]], cfg)
    assert res.latency_ps == 16 * max(100_000, 128 * 9 * 104)
    assert res.actions["adc_convert_9b"] == 16 * 128
    assert res.actions["dac_drives"] == 16 * 128
    assert res.energy_pj["adc"] == pytest.approx(16 * 128 * 2 * ISAAC_ADC_8BIT_PJ)
    # a 0-bit slice is never read; crossbars of a layer run in parallel, layers in turn
    zero = CrossbarJob(0, 3, 128, 128, 16, 0)
    small = CrossbarJob(1, 0, 128, 10, 16, 3)
    res = simulate_reram([[one, zero, one], [small]], cfg)
    assert res.layer_ps == [16 * 128 * 9 * 104, 16 * 100_000]
    assert res.actions["adc_convert_0b"] == 0 and res.actions["crossbar_reads"] == 3 * 16
    per_crossbar = np.zeros((4, 2, 3, 2), dtype=int)
    per_crossbar[3, 1, 2, 1] = 5
    jobs = crossbar_jobs(0, 300, 200, 1, per_crossbar, cfg)
    assert [(j.slice, j.rows_used, j.cols_used) for j in jobs if j.adc_bits] == [(3, 44, 72)]


# ---------------------------------------------------------------- STT
def test_stt_keeps_at_most_one_spike_per_window():
    g = torch.Generator().manual_seed(1)
    spikes = torch.rand((32, 5, 40), generator=g) < 0.6
    stt = stt_encode(spikes, 4)
    per_window = stt.reshape(8, 4, 5, 40).sum(1)
    assert per_window.max() == 1
    assert (per_window == spikes.reshape(8, 4, 5, 40).any(1)).all()
    assert not (stt & ~spikes).any()                   # only spikes that were there
    first = spikes.reshape(8, 4, 5, 40).int().argmax(1)  # the first spike of each window
    kept = stt.reshape(8, 4, 5, 40).int().argmax(1)
    has = per_window == 1
    assert (first[has] == kept[has]).all()
    assert (tw_spikes(spikes, 4) == per_window.bool()).all()


def test_stt_preserves_an_already_sparse_train():
    spikes = torch.zeros((12, 3), dtype=torch.bool)
    spikes[[0, 5, 11], 0] = True                       # one spike in windows 0, 1, 2
    spikes[[1, 6], 1] = True
    assert torch.equal(stt_encode(spikes, 4), spikes)
    assert int(stt_encode(spikes, 4).sum()) == int(spikes.sum())
    with pytest.raises(ValueError):
        stt_encode(spikes, 5)


def test_integrate_and_fire_closed_form():
    """One input spiking every step into a weight of 0.3: floor(0.3 t) spikes by step t."""
    layer = SnnLayer(torch.tensor([[0.3]]), torch.zeros(1), True)
    out = SnnLayer(torch.tensor([[1.0]]), torch.zeros(1), False)
    result = run([layer, out], torch.ones((20, 1, 1), dtype=torch.bool))
    assert float(result.potentials[0, 0]) == math.floor(0.3 * 20 + 1e-9)
    assert int(result.spikes[1].sum()) == 6
    x = torch.tensor([[0.0, 1.0]])
    s = rate_encode(x, 50, torch.Generator().manual_seed(0))
    assert s[:, 0, 0].sum() == 0 and s[:, 0, 1].sum() == 50


# ---------------------------------------------------------------- systolic array
def test_systolic_fold_and_schedule_closed_form():
    assert fold_cycles(32, 32, 8) == 2 * 32 + 32 + 8 - 2
    assert fold_cycles(32, 32, 0) == 0
    cfg = SnnArrayConfig(rows=32, cols=32, lanes=32)
    steps = 3
    spikes = np.full((steps, 2), 4.0)                  # 40 inputs: row folds of 32 and 8
    layer = LayerSpikes(40, 50, spikes)
    folds = [(32, 32), (32, 18), (8, 32), (8, 18)]
    neuron = math.ceil(50 / 32)
    serial = simulate_snn(schedule([layer], cfg, "serial"), cfg)
    assert serial.cycles == steps * (sum(fold_cycles(r, c, 1) for r, c in folds) + neuron)
    itt = simulate_snn(schedule([layer], cfg, "itt"), cfg)
    assert itt.cycles == sum(fold_cycles(r, c, steps) for r, c in folds) + neuron * steps
    assert serial.actions["weight_read_bytes"] == steps * 40 * 50
    assert itt.actions["weight_read_bytes"] == 40 * 50
    assert serial.actions["pe_adds"] == itt.actions["pe_adds"] == steps * 2 * 4 * 50
    assert itt.latency_ps == itt.cycles * 2000         # 500 MHz
    fold = row_fold_spikes(torch.ones((2, 3, 40), dtype=torch.bool), 32)
    assert fold.tolist() == [[32.0, 8.0], [32.0, 8.0]]


# ---------------------------------------------------------------- examples, tiny
def test_bitslice_example_end_to_end_tiny():
    ex = _example("bitslice_reram")
    out = ex.study(pretrain_iters=60, finetune_iters=30, calib=32, eval_samples=64)
    text = ex.report(out)
    assert "paper vs simulated" in text
    for r in out["regimes"]:
        e = r.energy
        assert e["per-slice"]["adc_nj"] < e["full-range"]["adc_nj"]
        assert e["per-slice"]["adc_nj"] <= e["uniform"]["adc_nj"] <= e["full-range"]["adc_nj"]
        assert e["per-crossbar"]["adc_nj"] <= e["per-slice"]["adc_nj"]
        assert max(r.need_calib) <= ReramConfig().full_range_bits
    by = {r.name: r for r in out["regimes"]}
    # bit-slice L1 makes the slices sparser than the unregularized fine-tuning
    assert sum(by["pruned+bit-slice L1"].zero_ratio) > sum(by["pruned+finetune"].zero_ratio)


def test_snn_example_end_to_end_tiny():
    ex = _example("snn_split_time")
    out = ex.study(steps=8, window=4, eval_samples=32, train_iters=40, windows=(2, 4))
    assert "STT + ITT" in ex.report(out)
    serial = out["serial"]
    for r in out["windows"]:
        assert r["stt_itt"]["latency_us"] < r["stt_serial"]["latency_us"] < serial["latency_us"]
        assert r["stt_itt"]["energy_nj"] < serial["energy_nj"]
        assert r["latency_ratio"] > 1 and r["energy_ratio"] > 1
        assert r["spikes"] <= out["baseline_spikes"]


@pytest.mark.slow
def test_examples_at_their_default_sizes():
    """The examples as documented (about 10 s each): directions and the paper comparison."""
    bs = _example("bitslice_reram").study()
    by = {r.name: r for r in bs["regimes"]}
    bsl, pre = by["pruned+bit-slice L1"], by["pretrained"]
    assert bsl.energy["per-slice"]["adc_nj"] < pre.energy["per-slice"]["adc_nj"]
    assert bsl.paper_cover[-1] > pre.paper_cover[-1]
    assert min(bsl.zero_ratio) > max(pre.zero_ratio[:-1])
    snn = _example("snn_split_time").study()
    main = snn["main"]
    assert main["latency_ratio"] > 10 and main["energy_ratio"] > 10
    assert abs(main["accuracy"] - snn["snn_accuracy"]) < 0.03
