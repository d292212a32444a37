"""Global buffer bank conflicts (arch/sram.py), SRAM energy by capacity (arch/energy.py,
Horowitz ISSCC 2014) and the ternary add-only PE (price per add, 2-bit weights), in closed
form."""

from __future__ import annotations

import math
from collections.abc import Generator
from pathlib import Path

import pytest

from arch.config import BufferConfig
from arch.energy import MAC_PJ_45NM, EnergyTable, sram_pj_per_64bit, weight_bits
from arch.sram import GlobalBuffer
from desim.clock import Clock
from desim.errors import ConfigError
from desim.experiment import load_arch
from desim.module import Simulator

ARCH = Path(__file__).resolve().parents[1] / "configs" / "arch"
CFG = BufferConfig(capacity_kib=64, banks=8, bank_width_bytes=16, latency_cycles=2)
PERIOD = 1000  # ps, 1 GHz


def run_accesses(*accesses: dict) -> tuple[int, GlobalBuffer]:
    """Start every access at time 0; the time (cycles) when the last one ends."""
    sim = Simulator()
    glb = GlobalBuffer("glb", sim, CFG, Clock.from_mhz(1000.0, "clock"))

    def one(kw: dict) -> Generator:
        yield from glb.access(**kw)

    for kw in accesses:
        glb.add_process(one, kw)
    sim.run()
    return sim.now_ps // PERIOD, glb


def test_striped_default_is_unchanged() -> None:
    n = 1000  # ceil(1000 / (8 * 16)) = 8 cycles + latency 2
    cycles, glb = run_accesses({"nbytes": n, "kind": "read"})
    assert cycles == 2 + -(-n // (8 * 16)) == 10
    assert glb.access_ps(n) == glb.access_ps(n, banks_touched=8) == 10 * PERIOD
    # Read and write ports run together when no banks are named (dual-ported, as before).
    cycles, _ = run_accesses({"nbytes": n, "kind": "read"}, {"nbytes": n, "kind": "write"})
    assert cycles == 10


def test_two_accesses_on_one_port_serialize() -> None:
    """Five 100 B reads at once, no banks named: each is 2 + ceil(100 / 128) = 3 cycles, and
    the one read port takes them one after another, 5 x 3 = 15 cycles (two at a time would
    end at 3 x 3 = 9); each port queues alone, so five writes beside them end at 15 too."""
    reads = [{"nbytes": 100, "kind": "read"}] * 5
    cycles, glb = run_accesses(*reads)
    assert glb.access_ps(100) == 3 * PERIOD
    assert cycles == 5 * (2 + -(-100 // (8 * 16))) == 15
    assert glb.actions["read_bytes"] == 500
    cycles, _ = run_accesses(*reads, *[{"nbytes": 100, "kind": "write"}] * 5)
    assert cycles == 15


def test_one_bank_access() -> None:
    n = 1000  # latency + ceil(n / bank_width) = 2 + 63
    cycles, glb = run_accesses({"nbytes": n, "kind": "read", "bank": 3, "banks_touched": 1})
    assert cycles == 2 + -(-n // 16) == 65
    assert glb.actions["read_bytes"] == n


def test_same_bank_serializes_other_banks_overlap() -> None:
    n = 160  # 2 + 10 cycles in one bank
    same, _ = run_accesses({"nbytes": n, "kind": "read", "bank": 5, "banks_touched": 1},
                           {"nbytes": n, "kind": "write", "bank": 5, "banks_touched": 1})
    assert same == 2 * 12
    apart, _ = run_accesses({"nbytes": n, "kind": "read", "bank": 5, "banks_touched": 1},
                            {"nbytes": n, "kind": "write", "bank": 6, "banks_touched": 1})
    assert apart == 12
    # Two banks each from 7 (7, 0) and from 0 (0, 1): they share bank 0 (wrap-around).
    wrap, _ = run_accesses({"nbytes": n, "kind": "read", "bank": 7, "banks_touched": 2},
                           {"nbytes": n, "kind": "write", "bank": 0, "banks_touched": 2})
    assert wrap == 2 * (2 + 5)


def test_an_access_over_more_banks_than_there_are_stripes_over_all() -> None:
    n = 1000  # 16 banks asked of 8: all 8, 8 x 16 B a cycle, 2 + ceil(1000 / 128) = 10
    cycles, glb = run_accesses({"nbytes": n, "kind": "read", "bank": 0, "banks_touched": 16})
    assert cycles == 10 and glb.access_ps(n, banks_touched=16) == 10 * PERIOD


def test_an_access_naming_only_its_bank_stripes_over_all_banks_and_locks_them() -> None:
    """A read naming bank 3 but no bank count stripes over all 8 (2 + ceil(1000 / 128) = 10
    cycles) and holds every bank, so a write confined to bank 0 (160 B: 2 + 10 cycles)
    waits for it although it uses the other port: 10 + 12 = 22 cycles."""
    alone, _ = run_accesses({"nbytes": 1000, "kind": "read", "bank": 3})
    assert alone == 10
    both, _ = run_accesses({"nbytes": 1000, "kind": "read", "bank": 3},
                           {"nbytes": 160, "kind": "write", "bank": 0, "banks_touched": 1})
    assert both == 10 + 12


def test_reads_and_writes_are_counted_apart() -> None:
    _, glb = run_accesses({"nbytes": 1000, "kind": "read"}, {"nbytes": 300, "kind": "write"},
                          {"nbytes": 24, "kind": "write", "bank": 2, "banks_touched": 1})
    assert glb.actions["read_bytes"] == 1000 and glb.actions["write_bytes"] == 324


def test_sram_energy_per_byte_is_an_eighth_of_the_64_bit_access() -> None:
    """Horowitz: 10 pJ a 64-bit (8-byte) read of an 8 KB bank, 1.25 pJ a byte at 45 nm;
    28 nm: x 28/45 (both at 0.9 V)."""
    assert EnergyTable("45nm").sram_pj_per_byte(8 * 1024) == pytest.approx(10 / 8)
    assert EnergyTable("28nm").sram_pj_per_byte(1024 * 1024) == pytest.approx(
        100 / 8 * 28 / 45)


def test_sram_energy_extrapolates_log_log_beyond_the_table() -> None:
    """Below 8 KB the 8-32 KB slope goes on (log 2 / log 4 = 1/2): a 2 KB bank is
    10 x (1/4)^(1/2) = 5 pJ; beyond 1 MB the 32 KB-1 MB slope (log 5 / log 32): a 4 MB bank
    is 100 x 4^(log 5 / log 32) = 190.4 pJ."""
    assert sram_pj_per_64bit(2 * 1024) == pytest.approx(5.0)
    assert sram_pj_per_64bit(4 * 1024 * 1024) == pytest.approx(
        100 * 4 ** (math.log(5) / math.log(32)))
    assert sram_pj_per_64bit(4 * 1024 * 1024) == pytest.approx(190.37, abs=0.01)


def test_sram_energy_grows_with_capacity() -> None:
    # Horowitz's table: a 64-bit read of an 8 KB bank 10 pJ, of a 1 MB bank 100 pJ: 10x.
    small, large = sram_pj_per_64bit(8 * 1024), sram_pj_per_64bit(1024 * 1024)
    assert small == pytest.approx(10.0) and large == pytest.approx(100.0)
    assert large / small == pytest.approx(10.0)
    assert sram_pj_per_64bit(32 * 1024) == pytest.approx(20.0)
    table = EnergyTable("45nm")
    assert table.sram_pj_per_byte(1024 * 1024) == pytest.approx(10 * table.sram_pj_per_byte(
        8 * 1024))


def test_a_mac_multiplies_at_the_datapath_and_adds_at_the_accumulator() -> None:
    """Horowitz's 45 nm figures: FP16 multiply 1.1 pJ with an FP32 add 0.9 pJ (mixed
    precision), against 1.1 + 0.4 all in FP16; FP8 (E4M3) products into FP32: 0.145 + 0.9.
    An accumulator of the other kind than the datapath is refused, naming the key."""
    table = EnergyTable("45nm")
    assert table.mac_pj("fp16", "fp32") == pytest.approx(1.1 + 0.9)
    assert table.mac_pj("fp16") == table.mac_pj("fp16", None) == pytest.approx(1.1 + 0.4)
    assert table.mac_pj("fp8", "fp32") == pytest.approx(1.1 * (4 / 11) ** 2 + 0.9)
    assert EnergyTable("28nm").mac_pj("fp16", "fp32") == pytest.approx(2.0 * 28 / 45)
    with pytest.raises(ConfigError, match="pe_cluster.accumulator.*'int32'.*'fp16'"):
        load_arch(ARCH / "dense.yaml", ["pe_cluster.accumulator=int32"])


def test_ternary_pe_prices_an_add_and_stores_two_bits() -> None:
    # Add-only: a weight in {-1, 0, +1} adds or subtracts the 8-bit activation, one int8 add
    # (Horowitz: 0.03 pJ at 45 nm), against int8's multiply + add (0.2 + 0.03).
    assert MAC_PJ_45NM["ternary"] == pytest.approx(0.03)
    assert MAC_PJ_45NM["int8"] - MAC_PJ_45NM["ternary"] == pytest.approx(0.2)
    assert EnergyTable("45nm").mac_pj("ternary") * 1_000_000 == pytest.approx(30_000)
    # 28 nm: the C V^2 rule, 28/45 of 45 nm (both at 0.9 V).
    assert EnergyTable("28nm").mac_pj("ternary") == pytest.approx(0.03 * 28 / 45)
    # Weight storage: 2 bits for a ternary datapath, the element width otherwise; a
    # configured weight_bits wins.
    assert weight_bits("ternary") == 2
    assert weight_bits("int8") == 8 and weight_bits("fp16") == 16
    assert weight_bits("fp16", 4) == 4


def test_ternary_pipeline_closed_form(tmp_path) -> None:
    """A dense 3x3 conv (K 8, C 16) on a ternary arch: its FF reads its 1,152 weights once,
    at 2 bits, 288 bytes (an int8 arch: 1,152); every MAC is priced as one add, into the
    arch's 32-bit accumulator."""
    from arch.accelerator import Accelerator
    from desim.experiment import load_arch
    from desim.hardware_view import hardware_view
    from desim.runner import simulate
    from mappings.pruning import PruningSpec
    from mappings.workload import WorkloadSpec, capture_workload

    topo = tmp_path / "one.csv"
    topo.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                    "Channels, Num Filter, Strides,\nc, 10, 10, 3, 3, 16, 8, 1,\n")
    workload = capture_workload(WorkloadSpec(scalesim_topology=str(topo), inference=True),
                                PruningSpec(method="dense"))
    root = Path(__file__).resolve().parents[1] / "configs" / "arch"
    ternary = load_arch(root / "ternary_pe_wise.yaml")
    ternary = ternary.model_copy(update={"sparsity": ternary.sparsity.model_copy(
        update={"weight_bits": None, "weight_format": "dense", "skip_zero_weights": False})})
    assert hardware_view(Accelerator(Simulator(), ternary)).weight_bits == 2
    int8 = load_arch(root / "int8_dense.yaml")
    assert hardware_view(Accelerator(Simulator(), int8)).weight_bits == 0  # element width
    res = simulate("t", ternary, workload)
    ff = res.layers.iloc[0]
    assert ff["weight_dram_bytes"] == 8 * 16 * 9 * 2 // 8 == 288
    assert simulate("i", int8, workload).layers.iloc[0]["weight_dram_bytes"] == 1152
    macs = 8 * 16 * 9 * 8 * 8
    assert ff["macs"] == macs
    assert res.energy_by_action_j["macs.macs"] == pytest.approx(
        macs * EnergyTable(ternary.technology).mac_pj("ternary", "int32") * 1e-12)
    assert EnergyTable("45nm").mac_pj("ternary", "int32") == pytest.approx(0.1)  # Horowitz
