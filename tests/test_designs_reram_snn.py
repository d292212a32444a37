"""Bit-slice ReRAM crossbars and the STT/ITT spiking systolic array: closed forms, end to end.

Closed forms: ADC bits of a column from its largest partial sum, column sums of a hand-made
crossbar counted by brute force, ADC energy scaling, crossbar timing; STT keeps at most one
spike per window and leaves sparse trains alone; a systolic fold takes SCALE-Sim's
2 S_R + S_C + V - 2 cycles and a schedule the sum of its folds and neuron batches.
Configs: configs/arch/reram_bitslice.yaml and snn_split_time.yaml load (dispatched on `kind`)
into the dataclass defaults the examples used; bad files name file and key and exit 2; both
designs are drawn as their datapath.
End to end: each example at tiny sizes, asserting the direction of its result.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch

from arch.config import MAX_PRICE_PJ
from arch.draw import draw_topology
from arch.energy import EnergyTable, node_scale
from arch.reram import (
    ISAAC_ADC_8BIT_PJ,
    CrossbarJob,
    ReramArch,
    ReramConfig,
    ReramEnergyTable,
    crossbar_jobs,
)
from arch.reram import simulate as simulate_reram
from arch.snn import (
    LayerShape,
    LayerSpikes,
    SnnArch,
    SnnArrayConfig,
    SnnEnergyTable,
    buffer_needs,
    check_buffers,
    fold_cycles,
    schedule,
)
from arch.snn import simulate as simulate_snn
from desim.errors import ConfigError, guarded
from desim.experiment import MAX_DESIGN_INT, load_arch, load_design
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
RERAM_YAML = ROOT / "configs" / "arch" / "reram_bitslice.yaml"
SNN_YAML = ROOT / "configs" / "arch" / "snn_split_time.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
    # ISAAC's other figures: a DAC drive a row, a crossbar read (2.4 mW for 100 ns over 8
    # crossbars), a shift-and-add a column
    assert res.energy_pj["dac"] == pytest.approx(16 * 128 * 0.41667)
    assert res.energy_pj["crossbar"] == pytest.approx(16 * 2.4 / 8 * 100)
    assert res.energy_pj["shift_add"] == pytest.approx(16 * 128 * 0.021)
    # two ADCs a crossbar: 64 conversions each, so a 9-bit read takes 64 x 9 x 104 ps
    shared = simulate_reram([[one]], dataclasses.replace(cfg, adcs_per_crossbar=2))
    assert shared.latency_ps == 16 * max(100_000, 64 * 9 * 104)
    assert shared.actions["adc_convert_9b"] == 16 * 128       # every column still converts
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
    # ITT: each fold streams the 3 steps; spikes a bit a row and vector; partial sums
    # written by every fold, read back by the second row fold's; neuron state per update
    a, pb, mb = itt.actions, cfg.psum_bytes, cfg.membrane_bytes
    assert a["spike_read_bytes"] == 2 * (32 * 3 // 8) + 2 * (8 * 3 // 8) == 30
    assert a["psum_write_bytes"] == 2 * (32 + 18) * 3 * pb
    assert a["psum_read_bytes"] == (32 + 18) * 3 * pb
    assert a["neuron_updates"] == 50 * 3
    assert a["membrane_read_bytes"] == a["membrane_write_bytes"] == 150 * mb
    assert a["spike_write_bytes"] == math.ceil(150 / 8)
    table = EnergyTable(cfg.technology)
    add = 0.1 * node_scale(cfg.technology)              # a 32-bit add, Horowitz
    glb = table.sram_pj_per_byte(cfg.buffer_kib * 1024 // 16)  # a bank of 16
    e = itt.energy_pj
    assert e["pe_adds"] == pytest.approx(a["pe_adds"] * add)
    assert e["weights"] == pytest.approx(40 * 50 * cfg.weight_bytes * glb)
    assert e["spikes"] == pytest.approx((30 + 19) * glb)
    assert e["psums"] == pytest.approx(3 * (32 + 18) * 3 * pb
                                       * table.sram_pj_per_byte(cfg.psum_buffer_kib * 1024))
    assert e["neurons"] == pytest.approx(
        150 * 2 * add + 300 * mb * table.sram_pj_per_byte(cfg.membrane_buffer_kib * 1024))
    fold = row_fold_spikes(torch.ones((2, 3, 40), dtype=torch.bool), 32)
    assert fold.tolist() == [[32.0, 8.0], [32.0, 8.0]]


@pytest.mark.parametrize("rows", [1, 2, 32])
def test_snn_accumulations_are_the_mean_spikes_times_the_outputs_on_any_array(rows):
    """Two samples, 2 steps, 4 inputs meeting 3 outputs: the inputs' mean spikes a step are
    0.5, 0.5, 1 and 0.5 (2.5), so 2 x 2.5 x 3 = 15 accumulations an inference, serial or ITT,
    on a 1 x 1, 2 x 2 or 32 x 32 array. Rounded a fold at a time (before 2026-12-07) they
    were 6 serial and 15 ITT on 1 x 1 (a half spike went to 0), 16 and 16 on the others."""
    spikes = torch.zeros((2, 2, 4), dtype=torch.bool)          # (steps, samples, inputs)
    spikes[:, 0, [0, 2]] = True
    spikes[:, 1, [1, 2, 3]] = True
    cfg = SnnArrayConfig(rows=rows, cols=rows, lanes=rows)
    layer = LayerSpikes(4, 3, row_fold_spikes(spikes, rows).numpy())
    for mode in ("serial", "itt"):
        result = simulate_snn(schedule([layer], cfg, mode), cfg)
        assert result.actions["pe_adds"] == 2 * 2.5 * 3


def test_a_clock_off_the_picosecond_grid_keeps_the_schedules_cycles():
    """At 1,200 MHz (833 1/3 ps) each of the serial schedule's 1,000 x (4 folds + 1 neuron
    batch) waits is rounded up to the picosecond: the time drifts by 1,000 ps, more than a
    cycle; the cycles do not (they had been the time over the period, the roundings
    counted as cycles: 849,283 for LeNet-300's baseline of 849,280)."""
    cfg, steps = SnnArrayConfig(clock_mhz=1200), 1000
    layer = LayerSpikes(40, 50, np.full((steps, 2), 4.0))
    waits = [fold_cycles(r, c, 1) for r, c in ((32, 32), (32, 18), (8, 32), (8, 18))]
    waits.append(math.ceil(50 / 32))
    assert waits == [95, 81, 47, 33, 2]
    serial = simulate_snn(schedule([layer], cfg, "serial"), cfg)
    assert serial.cycles == steps * sum(waits) == 258_000
    # a wait of n cycles takes ceil(n x 2500/3) ps: 1/3, 0, 1/3, 0 and 1/3 ps over
    assert serial.latency_ps == 258_000 * 2500 // 3 + steps == 215_001_000
    assert serial.latency_ps * 3 // 2500 == 258_001   # the old count


LENET300 = [LayerShape(784, 300), LayerShape(300, 100), LayerShape(100, 10, spiking=False)]


def test_what_each_buffer_must_hold_closed_form():
    """LeNet-300-100 on the default design. Global buffer: the network's weights, 784 x 300
    + 300 x 100 + 100 x 10 = 266,200 bytes, and the first layer's spikes, (784 + 300) bits
    a vector (136 bytes serially, 8 x 1,084 / 8 with ITT's 8 TWs). Accumulator: 300 outputs
    x 4 bytes a vector. Membranes: serially the 400 spiking neurons', with ITT the first
    layer's 300, 4 bytes each."""
    cfg = SnnArrayConfig()
    serial = {k: n for k, (n, _) in buffer_needs(LENET300, cfg, "serial", 32).items()}
    assert serial == {"buffer_kib": 266_200 + 98 + 38, "psum_buffer_kib": 300 * 4,
                      "membrane_buffer_kib": 400 * 4}
    itt = {k: n for k, (n, _) in buffer_needs(LENET300, cfg, "itt", 8).items()}
    assert itt == {"buffer_kib": 266_200 + 784 + 300, "psum_buffer_kib": 300 * 8 * 4,
                   "membrane_buffer_kib": 300 * 4}
    check_buffers(LENET300, cfg, "itt", 27)     # 32,400 bytes of sums in 32 KiB


@pytest.mark.parametrize("cfg, mode, steps, key, message", [
    # its weights had been priced only: a 1 KiB buffer ran and reported less energy
    (SnnArrayConfig(buffer_kib=1), "serial", 32, "buffer_kib",
     "1 KiB (1,024 bytes) cannot hold the network's weights (266,200 bytes) and layer 0's "
     "spikes for 1 vector (136 bytes) = 266,336 bytes, under the serial schedule"),
    # --steps 64 --window 2: 32 TWs of a 300-neuron layer's sums
    (SnnArrayConfig(), "itt", 32, "psum_buffer_kib",
     "32 KiB (32,768 bytes) cannot hold layer 0's partial sums: 300 outputs x 32 TWs x 4 "
     "bytes = 38,400 bytes, under ITT"),
    (SnnArrayConfig(membrane_buffer_kib=1), "serial", 8, "membrane_buffer_kib",
     "1 KiB (1,024 bytes) cannot hold every spiking layer's membrane potentials: 400 "
     "neurons x 4 bytes = 1,600 bytes"),
])
def test_a_buffer_too_small_for_its_schedule_is_refused(cfg, mode, steps, key, message):
    with pytest.raises(ConfigError) as err:
        check_buffers(LENET300, cfg, mode, steps)
    assert err.value.key == key and message in str(err.value)
    layers = [LayerSpikes(s.in_features, s.out_features,
                          np.zeros((steps, -(-s.in_features // 32))), s.spiking)
              for s in LENET300]
    with pytest.raises(ConfigError, match=key):       # before simulating
        schedule(layers, cfg, mode)


@pytest.mark.parametrize("args, edit, message", [
    (["--steps", "64", "--window", "2"], None,
     "psum_buffer_kib: 32 KiB (32,768 bytes) cannot hold layer 0's partial sums: 300 outputs "
     "x 32 TWs x 4 bytes = 38,400 bytes, under ITT"),
    ([], ("\nbuffer_kib: 512", "\nbuffer_kib: 1"), "buffer_kib: 1 KiB (1,024 bytes) cannot "
     "hold the network's weights (266,200 bytes)"),
])
def test_the_snn_example_refuses_a_design_too_small_before_training(tmp_path, capsys, args,
                                                                     edit, message):
    """One line naming the file and the key, exit 2, before the network is trained (the
    run had completed)."""
    arch = _write(tmp_path, SNN_YAML, *edit) if edit else SNN_YAML
    ex = _example("snn_split_time")
    ex.study = None                               # never reached
    with pytest.raises(SystemExit) as exit_:
        guarded(lambda: ex.main(["--arch", str(arch), *args]))
    assert exit_.value.code == 2
    assert f"{arch}: {message}" in " ".join(capsys.readouterr().err.split())


# ---------------------------------------------------------------- architecture files
def _keys_and_comments(path: Path) -> dict[str, str]:
    """Every `key: value` line of a YAML file: key -> its comment (text after '#')."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*(\w+):\s*([^#\s][^#]*)?(#.*)?$", line)
        if m:
            out[m.group(1)] = (m.group(3) or "").lstrip("# ")
    return out


def test_reram_yaml_is_the_examples_design():
    arch = load_design(RERAM_YAML)
    assert isinstance(arch, ReramArch) and arch.kind == "reram_crossbar"
    assert arch.name == "reram_bitslice"
    cfg, table = arch.config(), arch.energy_table()
    assert cfg == ReramConfig() and table == ReramEnergyTable()
    assert (cfg.rows, cfg.cols, cfg.cell_bits, cfg.weight_bits, cfg.input_bits) == \
        (128, 128, 2, 8, 8)
    assert (cfg.slices, cfg.full_range_bits, cfg.read_ns, cfg.sar_bit_ps) == (4, 9, 100, 104)
    assert table.crossbar_read_pj == 30.0 and table.adc_pj(8) == 16e-3 / (8 * 1.2e9) * 1e12
    assert table.dac_pj_per_row == 0.41667 and table.shift_add_pj == 0.021


def test_snn_yaml_is_the_examples_design():
    arch = load_design(SNN_YAML)
    assert isinstance(arch, SnnArch) and arch.kind == "snn_systolic"
    cfg = arch.config()
    assert cfg == SnnArrayConfig()
    assert (cfg.rows, cfg.cols, cfg.lanes, cfg.clock_mhz, cfg.technology) == \
        (32, 32, 32, 500, "28nm")
    assert (cfg.buffer_kib, cfg.psum_buffer_kib, cfg.membrane_buffer_kib) == (512, 32, 8)
    # the energy table follows: Horowitz's 0.1 pJ 32-bit add x 28/45 (28 nm), 2 per update
    table = SnnEnergyTable.of(cfg)
    e = table.energy_pj(Counter(pe_adds=10, neuron_updates=1))
    assert e["pe_adds"] == pytest.approx(10 * 0.1 * 28 / 45)
    assert e["neurons"] == pytest.approx(2 * 0.1 * 28 / 45)


@pytest.mark.parametrize("path,dataclass", [(RERAM_YAML, ReramConfig),
                                            (SNN_YAML, SnnArrayConfig)], ids=["reram", "snn"])
def test_every_parameter_is_written_with_its_source(path, dataclass):
    keys = _keys_and_comments(path)
    params = [f.name for f in dataclasses.fields(dataclass)]
    if dataclass is ReramConfig:
        params += [f.name for f in dataclasses.fields(ReramEnergyTable)]
    missing = [p for p in params if p not in keys]
    assert not missing, missing
    for p in params:
        assert re.search(r"ISAAC|paper|assumption|Accelergy", keys[p]), (p, keys[p])
    assert {"kind", "name"} <= set(keys)


def _write(tmp_path: Path, src: Path, old: str, new: str) -> Path:
    text = src.read_text()
    assert old in text
    out = tmp_path / src.name
    out.write_text(text.replace(old, new, 1))
    return out


@pytest.mark.parametrize("src,old,new,key,expected", [
    (RERAM_YAML, "\ncell_bits:", "\ncel_bits:", "cel_bits", "unknown key; expected one of"),
    (RERAM_YAML, "\nweight_bits: 8", "\nweight_bits: 9", "weight_bits",
     "not a multiple of cell_bits 2"),
    (RERAM_YAML, "\nadcs_per_crossbar: 1", "\nadcs_per_crossbar: 129", "adcs_per_crossbar",
     "129 ADCs for 128 columns"),
    (RERAM_YAML, "  shift_add_pj: 0.021", "  shift_add_pj: -1", "energy.shift_add_pj",
     "greater than or equal to 0"),
    (RERAM_YAML, "  adc_8bit_pj: 1.6666666666666667", "  adc_8bit_pj: .nan",
     "energy.adc_8bit_pj", "finite number"),
    (RERAM_YAML, "  dac_pj_per_row: 0.41667", "  dac_pj_per_row: .inf", "energy.dac_pj_per_row",
     "finite number"),
    (RERAM_YAML, "  crossbar_read_pj: 30.0", "  crossbar_read_pj: 1.0e+300",
     "energy.crossbar_read_pj", "less than or equal to 1000000"),
    (SNN_YAML, "\nlanes: 32", "\nlanes: many", "lanes", "valid integer"),
    (SNN_YAML, "\ntechnology: 28nm", "\ntechnology: 7nm", "technology", "'45nm' or '28nm'"),
    (SNN_YAML, "\nkind: snn_systolic", "\nkind: snn", "kind", "unknown kind 'snn'"),
    # a training processor's limits: a period of a picosecond or more (10^7 MHz had passed
    # and failed in the study naming no file or key), 1 MHz or more
    (SNN_YAML, "\nclock_mhz: 500", "\nclock_mhz: 10000000", "clock_mhz",
     "less than or equal to 1000000"),
    (SNN_YAML, "\nclock_mhz: 500", "\nclock_mhz: 0", "clock_mhz", "greater than or equal to 1"),
], ids=["typo", "slices", "adcs", "energy", "energy-nan", "energy-inf", "energy-huge", "type",
        "node", "kind", "clock-fast", "clock-zero"])
def test_bad_files_name_file_and_key(tmp_path, src, old, new, key, expected):
    bad = _write(tmp_path, src, old, new)
    with pytest.raises(ConfigError) as err:
        load_design(bad)
    assert err.value.file == str(bad) and err.value.key == key
    assert expected in str(err.value)


def test_the_snn_designs_prices_stay_bounded(tmp_path):
    """The SNN file sets no price: they follow from `technology` and the buffer sizes, whole
    numbers of at most 2^31 - 1 KiB (`MAX_DESIGN_INT`). At that size, at 45 nm, every price
    is still at most MAX_PRICE_PJ, as a ReRAM or training processor's own price must be."""
    top = SnnEnergyTable("45nm", MAX_DESIGN_INT, MAX_DESIGN_INT, MAX_DESIGN_INT)
    prices = top.energy_pj(Counter(pe_adds=1, weight_read_bytes=1, spike_read_bytes=1,
                                   psum_read_bytes=1, neuron_updates=1))
    assert all(0 < pj <= MAX_PRICE_PJ for pj in prices.values()), prices
    big = _write(tmp_path, SNN_YAML, "\nbuffer_kib: 512", f"\nbuffer_kib: {MAX_DESIGN_INT + 1}")
    with pytest.raises(ConfigError) as err:
        load_design(big)
    assert err.value.key == "buffer_kib"
    banks = _write(tmp_path, SNN_YAML, "\nbuffer_banks: 16", "\nbuffer_banks: 524289")
    with pytest.raises(ConfigError, match="524289 banks in buffer_kib 512 .524288 bytes.") as err:
        load_design(banks)
    assert err.value.key == "buffer_banks"


def test_examples_exit_2_on_a_bad_file_or_the_wrong_kind(tmp_path, capsys):
    """As the scripts run (`guarded(main)`): one line, exit 2."""
    bad = _write(tmp_path, RERAM_YAML, "\nrows: 128", "\nrowz: 128")
    with pytest.raises(SystemExit) as exit_:
        guarded(lambda: _example("bitslice_reram").main(["--arch", str(bad)]))
    assert exit_.value.code == 2
    assert f"{bad}: rowz: unknown key" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        guarded(lambda: _example("snn_split_time").main(["--arch", str(RERAM_YAML)]))
    assert exit_.value.code == 2
    assert "kind: expected kind snn_systolic, got reram_crossbar" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        guarded(lambda: _example("snn_split_time").main(["--rows", "0"]))
    assert exit_.value.code == 2
    assert "rows: Input should be greater than 0" in capsys.readouterr().err


@pytest.mark.parametrize("script, args, message", [
    ("bitslice_reram", ["--calib", "0"], "argument --calib: expected at least 1, got 0"),
    ("bitslice_reram", ["--eval-samples", "-1"], "argument --eval-samples: expected at least 1"),
    ("bitslice_reram", ["--pretrain-iters", "-5"],
     "argument --pretrain-iters: expected at least 0"),
    ("snn_split_time", ["--steps", "8", "--window", "16"],
     "--steps 8 time steps do not split into windows of 16"),
    ("snn_split_time", ["--windows", "0"], "argument --windows: expected at least 1, got 0"),
    ("circnn", ["--blocks", "0"], "argument --blocks: expected at least 1, got 0"),
    ("ternary_pe_wise", ["--sparsity", "1.5"], "argument --sparsity: expected a sparsity from 0 "
                                               "up to 1 (not 1), got 1.5"),
    ("admm_break_even", ["--batch", "0"], "argument --batch: expected at least 1, got 0"),
    ("permdnn", ["--batch", "x"], "argument --batch: expected a whole number, got 'x'"),
])
def test_examples_refuse_counts_and_fractions_out_of_range(capsys, script, args, message):
    """A calibration set of 0 images divided by zero, of -4 sized the ADCs on "-4 images";
    a window longer than the steps, a batch of 0, a sparsity of 1.5 failed with tracebacks
    (some after seconds of work)."""
    with pytest.raises(SystemExit) as exit_:
        _example(script).main(args)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_examples_take_their_hardware_from_the_file(tmp_path):
    bs = _example("bitslice_reram")
    small = _write(tmp_path, RERAM_YAML, "\nrows: 128", "\nrows: 64")
    assert bs.load_arch(small).config() == ReramConfig(rows=64)
    assert bs.load_arch(rows=32).config() == ReramConfig(rows=32, cols=32)
    snn = _example("snn_split_time")
    assert snn.load_arch(rows=16).config() == SnnArrayConfig(rows=16, cols=16, lanes=16)
    assert snn.load_arch().config() == SnnArrayConfig()


def test_desim_run_refuses_these_designs_naming_the_script(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_arch(RERAM_YAML)
    assert err.value.key == "kind" and "examples/bitslice_reram.py" in str(err.value)
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(f"name: x\nworkload: {{model: lenet300, batch: 2, input_shape: [784]}}"
                          f"\nruns:\n  - {{name: snn, arch: {SNN_YAML}}}\nbaseline: snn\n")
    result = subprocess.run([sys.executable, "-m", "desim", "run", str(experiment), "--out",
                             str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "Traceback" not in message
    assert "snn_split_time.yaml: kind: a snn_systolic design is not a training processor" in \
        message and "examples/snn_split_time.py" in message


def test_graphs_have_the_datapath_and_draw(tmp_path):
    reram = load_design(RERAM_YAML).graph()
    kinds = Counter(k for _, k in reram.nodes(data="kind"))
    assert kinds == {"sram": 2, "dac": 1, "crossbar": 4, "adc": 4, "shift_add": 1}
    paths = list(nx.all_simple_paths(reram, "input_buffer", "output_buffer"))
    assert len(paths) == 4                                   # one through each slice
    assert sorted(reram.nodes[p[2]]["slice"] for p in paths) == [0, 1, 2, 3]
    snn = load_design(SNN_YAML).graph()
    assert dict(snn.nodes(data="kind")) == {
        "global_buffer": "sram", "systolic_array": "systolic_array", "psum_buffer": "sram",
        "neuron_unit": "neuron_unit", "membrane_buffer": "sram"}
    assert snn.nodes["systolic_array"]["rows"] == 32
    assert snn.has_edge("psum_buffer", "neuron_unit") and snn.has_edge("neuron_unit",
                                                                       "global_buffer")
    for name, g in (("reram", reram), ("snn", snn)):
        png = draw_topology(g, tmp_path / f"{name}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 10_000
        dot = draw_topology(g, tmp_path / f"{name}.dot").read_text()
        assert dot.count("->") == g.number_of_edges()
        assert '"#999999"' not in dot                       # every kind has its colour


def _topology(*args: str) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-m", "desim", "topology", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def test_topology_cli_draws_both_and_exits_2_on_bad_input(tmp_path):
    code, text = _topology(str(RERAM_YAML), "-o", str(tmp_path / "reram.png"))
    assert code == 0 and "(12 nodes, 14 links)" in text
    code, text = _topology(str(SNN_YAML), "-o", str(tmp_path / "snn.png"))
    assert code == 0 and "(5 nodes, 7 links)" in text
    for name in ("reram", "snn"):
        png = tmp_path / f"{name}.png"
        assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 10_000
    code, text = _topology(str(RERAM_YAML), "-o", str(tmp_path / "x.png"), "--set",
                           "energy.shift_add_pj=2e6")
    assert code == 2 and f"{RERAM_YAML}: energy.shift_add_pj: Input should be less than" in text
    bad = _write(tmp_path, SNN_YAML, "\ncols: 32", "\ncols: 32\ncolz: 4")
    code, text = _topology(str(bad), "-o", str(tmp_path / "x.png"))
    assert code == 2 and f"{bad}: colz: unknown key" in text
    code, text = _topology(str(SNN_YAML), "-o", str(tmp_path / "x.png"), "--stats",
                           str(tmp_path))
    assert code == 2 and "--stats: a snn_systolic design has no desim run results" in text
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------- examples, tiny
def test_bitslice_example_end_to_end_tiny():
    ex = _example("bitslice_reram")
    out = ex.study(pretrain_iters=60, finetune_iters=30, calib=32, eval_samples=64)
    text = ex.report(out)
    assert "paper vs simulated" in text
    # how long it trained, in epochs of the 4,000 training images (it had read "for a few
    # epochs" whatever the iterations): 60 x 64 / 4,000 and 30 x 64 / 4,000
    assert ("LeNet-300-100 trained 60 pretraining + 30 fine-tuning iterations at batch 64 on "
            "4,000 MNIST images (about 0.96 + 0.48 epochs)") in " ".join(text.split())
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
    text = ex.report(out)
    assert "STT + ITT" in text
    # a difference of two accuracies in points (it had read "(change -0.2%)")
    change = 100 * (out["main"]["accuracy"] - out["snn_accuracy"])
    assert f"(change {change:+.1f} points)" in text
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
