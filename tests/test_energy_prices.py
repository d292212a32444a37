"""A design's own prices (arch YAML `energy:`, arch.energy.DesignPrices): they replace the
table's figure in the simulation's energy and in the mapper's estimate, in closed form."""

from __future__ import annotations

from pathlib import Path

import pytest

from arch.accelerator import Accelerator
from arch.energy import ELEMENT_BYTES, DesignPrices, EnergyTable
from desim.errors import ConfigError
from desim.experiment import load_arch, load_experiment
from desim.hardware_view import hardware_view
from desim.module import Simulator
from desim.runner import simulate
from mappings.pruning import PruningSpec
from mappings.workload import WorkloadSpec, capture_workload

ROOT = Path(__file__).resolve().parents[1]
DENSE = ROOT / "configs" / "arch" / "dense.yaml"
# `delay` chooses tiles by time alone, so a price changes the energy, never the mapping.
BY_DELAY = ["mapping.objective=delay"]


@pytest.fixture(scope="module")
def one_conv(tmp_path_factory):
    """A dense 3x3 conv, K 8, C 16 on a 10 x 10 map, trained (FF and WG)."""
    topo = tmp_path_factory.mktemp("topo") / "one.csv"
    topo.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                    "Channels, Num Filter, Strides,\nc, 10, 10, 3, 3, 16, 8, 1,\n")
    return capture_workload(WorkloadSpec(scalesim_topology=str(topo)),
                            PruningSpec(method="dense"))


def test_without_own_prices_the_table_prices_the_design() -> None:
    cfg = load_arch(DENSE)
    acc = Accelerator(Simulator(), cfg)
    table = EnergyTable("28nm")
    mac = (1.1 + 0.9) * 28 / 45  # fp16 multiply, fp32 add (Horowitz), scaled to 28 nm
    assert acc.prices.mac_pj == pytest.approx(mac) == acc.prices.vector_op_pj
    assert acc.prices.noc_pj_per_bit_hop == pytest.approx(0.4 * 28 / 45)
    assert acc.prices.global_buffer_pj_per_byte == table.sram_pj_per_byte(32 * 1024)
    assert acc.prices.local_buffer_pj_per_byte == table.sram_pj_per_byte(16 * 1024)
    assert hardware_view(acc).mac_pj == acc.prices.mac_pj


def test_the_tables_stated_assumptions_in_closed_form() -> None:
    """The figures arch/energy.py derives from Horowitz (45 nm) by its stated assumptions:
    an fp8 MAC into fp8 is 1.1 x (4/11)^2 + 0.4 / 2; a regenerated weight is three 32-bit
    adds and an fp16 multiply-add, 3 x 0.1 + 1.1 + 0.4 = 1.8 pJ; an fp8 (E4M3) element is
    one byte, as int8's and ternary activations' (ternary weights: 2 bits)."""
    table = EnergyTable("45nm")
    assert table.mac_pj("fp8") == pytest.approx(1.1 * (4 / 11) ** 2 + 0.2)
    assert table.weight_generator_pj_per_value() == pytest.approx(1.8)
    assert EnergyTable("28nm").weight_generator_pj_per_value() == pytest.approx(
        1.8 * 28 / 45)
    assert {p: 8 * n for p, n in ELEMENT_BYTES.items()} == {
        "fp32": 32, "fp16": 16, "fp8": 8, "int8": 8, "int32": 32, "ternary": 8}
    prices = DesignPrices.of("45nm", "fp16", None, 8 * 1024, 8 * 1024)
    assert prices.noc_pj_per_byte_hop == pytest.approx(8 * 0.4)


def test_a_mac_price_also_prices_vector_ops_unless_they_have_their_own() -> None:
    args = ("28nm", "fp16", "fp32", 32 * 1024, 16 * 1024)
    assert DesignPrices.of(*args, {"mac_pj": 0.5}).vector_op_pj == 0.5
    assert DesignPrices.of(*args, {"mac_pj": 0.5, "vector_op_pj": 0.2}).vector_op_pj == 0.2


def test_the_vector_unit_multiplies_activations_at_its_own_precision() -> None:
    """A vector op (a BN's multiply-add) is a MAC on the activations: on a ternary array an
    8-bit multiply and its int32 add, 0.2 + 0.1 pJ at 45 nm, as the int8 array's, not the
    ternary PE's add alone (0.1); `vector_unit.precision` prices it at its own (fp32:
    3.7 + 0.9); a design's own MAC price carries to the vector op only where that op is the
    PEs' MAC."""
    ternary = load_arch(ROOT / "configs" / "arch" / "ternary_pe_wise.yaml")
    int8 = load_arch(ROOT / "configs" / "arch" / "int8_dense.yaml")
    scale = 28 / 45
    for cfg, mac in ((ternary, 0.1), (int8, 0.3)):
        prices = Accelerator(Simulator(), cfg).prices
        assert prices.mac_pj == pytest.approx(mac * scale)
        assert prices.vector_op_pj == pytest.approx(0.3 * scale)
    fp32 = load_arch(DENSE, ["vector_unit.precision=fp32"])
    assert Accelerator(Simulator(), fp32).prices.vector_op_pj == pytest.approx(4.6 * scale)
    args = ("28nm", "ternary", "int32", 32 * 1024, 16 * 1024)
    assert DesignPrices.of(*args, {"mac_pj": 0.05}).vector_op_pj == pytest.approx(0.3 * scale)
    assert DesignPrices.of("28nm", "fp16", "fp32", 32 * 1024, 16 * 1024, {"mac_pj": 0.5},
                           vector_precision="fp16").vector_op_pj == pytest.approx(1.5 * scale)


def test_a_runs_vector_ops_are_priced_at_the_vector_op_price(tmp_path) -> None:
    """A 3x3 conv (C 3, K 4, no padding) on 2 images of 6 x 6, then a batch norm: its
    2 x 4 x 4 x 4 = 128 outputs are the BN's elements, 4 ops each in FF and 7 in BP (X and
    dY), 128 x 11 = 1,408 vector-unit ops, at the design's own 0.5 pJ a vector op: 704 pJ,
    not the MAC's 2.0 pJ (2,816 pJ); the MACs keep theirs."""
    (tmp_path / "net.py").write_text(
        "from torch import nn\n\n\ndef make(num_classes):\n    return nn.Sequential("
        "nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten())\n")
    workload = capture_workload(
        WorkloadSpec(model=f"{tmp_path / 'net.py'}:make", batch=2, input_shape=[3, 6, 6],
                     num_classes=64, data="random"), PruningSpec(method="dense"))
    own = load_arch(DENSE, [*BY_DELAY, "energy.mac_pj=2.0", "energy.vector_op_pj=0.5"])
    result = simulate("own", own, workload)
    ops = result.stats["modules"]["own.vector_unit"]["actions"]["ops"]
    assert ops == 2 * 4 * 4 * 4 * (4 + 7) == 1408
    assert result.energy_prices_pj["vector_op_pj"] == 0.5
    assert result.energy_by_action_j["vector_unit.ops"] == pytest.approx(1408 * 0.5e-12, rel=1e-12)
    assert result.energy_by_component_j["vector_unit"] == pytest.approx(704e-12, rel=1e-12)
    macs = int(result.layers["macs"].sum())
    assert macs == 2 * 4 * 3 * 9 * 4 * 4 * 2  # FF and WG (a first layer has no BP)
    assert result.energy_by_action_j["macs.macs"] == pytest.approx(macs * 2.0e-12)


def test_own_prices_replace_the_tables_in_the_run(one_conv) -> None:
    table = load_arch(DENSE, BY_DELAY)
    own = load_arch(DENSE, [*BY_DELAY, "energy.mac_pj=2.0", "energy.noc_pj_per_bit_hop=0",
                            "energy.global_buffer_pj_per_byte=0.5",
                            "energy.local_buffer_pj_per_byte=0.25"])
    a, b = simulate("table", table, one_conv), simulate("own", own, one_conv)
    assert a.total_ps == b.total_ps  # prices change no timing
    ea, eb = a.energy_by_action_j, b.energy_by_action_j
    macs = int(a.layers["macs"].sum())
    assert macs == 2 * 8 * 16 * 9 * 8 * 8  # FF and WG (a first layer has no BP)
    assert eb["macs.macs"] == pytest.approx(macs * 2.0e-12)
    # each priced action is the modules' own count (stats.json) at the price in force
    modules = a.stats["modules"]

    def link_bytes(between_routers: bool) -> int:  # over links between routers, or into one
        return sum(m["actions"]["bytes"] for path, m in modules.items()
                   if (path.startswith("table.noc.r") == between_routers and "->r" in path
                       and "actions" in m))
    prices = a.energy_prices_pj
    hop = prices["noc_pj_per_bit_hop"]
    assert ea["noc.byte_hops"] == pytest.approx(link_bytes(True) * 8 * hop * 1e-12)
    assert prices["noc_pj_per_bit_port"] == pytest.approx(0.75 * hop)  # listed, derived
    assert ea["noc.port_bytes"] == pytest.approx(
        link_bytes(False) * 8 * prices["noc_pj_per_bit_port"] * 1e-12)
    assert link_bytes(True) > 0 and eb["noc.byte_hops"] == eb["noc.port_bytes"] == 0
    for action, module, count, unit, new in (
            ("global_buffer.read_bytes", "glb", "read_bytes", "global_buffer_pj_per_byte", 0.5),
            ("local_buffers.write_bytes", "pe_array", "local_buffer_write_bytes",
             "local_buffer_pj_per_byte", 0.25)):
        counted = modules[f"table.{module}"]["actions"][count]
        assert counted > 0
        assert ea[action] == pytest.approx(counted * prices[unit] * 1e-12)
        assert eb[action] == pytest.approx(counted * new * 1e-12)
    for action in ("dram.read_bursts", "dram.activates", "dram.standby"):
        assert eb[action] == ea[action] > 0  # DRAM keeps its IDD-current model
    assert b.summary()["energy_prices_pj"]["mac_pj"] == 2.0
    assert "selector_pj_per_entry" not in prices  # dense.yaml has no selector


def test_a_lower_supply_scales_every_on_chip_price_by_its_square(one_conv) -> None:
    """dense.yaml (28 nm, nominal 0.9 V) at 0.6 V: every on-chip price, its own `energy:`
    figures too, times (0.6 / 0.9)^2 = 4/9, so every on-chip action's joules; the timing and
    DRAM's IDD-current energy stay."""
    nominal = load_arch(DENSE, [*BY_DELAY, "energy.mac_pj=2.0"])
    low = load_arch(DENSE, [*BY_DELAY, "energy.mac_pj=2.0", "supply_voltage_v=0.6"])
    a, b = simulate("nominal", nominal, one_conv), simulate("low", low, one_conv)
    assert b.energy_prices_pj["mac_pj"] == pytest.approx(2.0 * 4 / 9)
    for name, pj in a.energy_prices_pj.items():
        assert b.energy_prices_pj[name] == pytest.approx(pj * 4 / 9), name
    assert a.total_ps == b.total_ps
    for action, joules in a.energy_by_action_j.items():
        scale = 1.0 if action.startswith("dram.") else 4 / 9
        assert b.energy_by_action_j[action] == pytest.approx(joules * scale), action
    assert load_arch(DENSE, ["supply_voltage_v=0.9"]) == load_arch(DENSE, []).model_copy(
        update={"supply_voltage_v": 0.9})  # the nominal, given: the same prices
    assert Accelerator(Simulator(), load_arch(DENSE, ["supply_voltage_v=0.9"])).prices == \
        Accelerator(Simulator(), load_arch(DENSE)).prices


@pytest.mark.parametrize("volts", [0.2, 1.4, 0])
def test_a_supply_out_of_the_rules_range_is_refused(volts) -> None:
    with pytest.raises(ConfigError, match=r"dense\.yaml: supply_voltage_v: "):
        load_arch(DENSE, [f"supply_voltage_v={volts}"])


def test_the_mapper_estimates_with_the_designs_prices() -> None:
    view = hardware_view(Accelerator(Simulator(), load_arch(DENSE, [
        "energy.mac_pj=2.0", "energy.noc_pj_per_bit_hop=0",
        "energy.local_buffer_pj_per_byte=0.25"])))
    assert (view.mac_pj, view.noc_pj_per_byte, view.noc_multicast_pj_per_byte,
            view.local_pj_per_byte) == (2.0, 0.0, 0.0, 0.25)


def test_a_price_for_a_missing_component_or_a_negative_price_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"dense\.yaml: energy\.selector_pj_per_entry: this "
                                          "design has no selector section") as err:
        load_arch(DENSE, ["energy.selector_pj_per_entry=0.01"])
    assert err.value.key == "energy.selector_pj_per_entry"  # the check names its key
    with pytest.raises(ConfigError, match=r"dense\.yaml: energy\.noc_pj_per_bit_hop"):
        load_arch(DENSE, ["energy.noc_pj_per_bit_hop=-1"])
    with pytest.raises(ConfigError, match="energy.noc_pj_per_hop"):
        load_arch(DENSE, ["energy.noc_pj_per_hop=0.1"])


def test_desim_run_takes_arch_overrides_for_one_run_or_every_run() -> None:
    quickstart = ROOT / "configs" / "experiments" / "quickstart.yaml"
    experiment = load_experiment(quickstart, ["arch.hppu.energy.noc_pj_per_bit_hop=0.1"])
    assert experiment.archs["hppu"].energy.noc_pj_per_bit_hop == 0.1
    assert experiment.archs["dense"].energy.noc_pj_per_bit_hop is None
    with pytest.raises(ConfigError, match="no run 'tpu'; runs: dense, hppu"):
        load_experiment(quickstart, ["arch.tpu.energy.mac_pj=1"])
    every = load_experiment(quickstart, ["arch.hppu.energy.mac_pj=2",
                                         "arch.*.energy.mac_pj=1", "arch.*.core_clock_mhz=250"])
    assert every.archs["dense"].energy.mac_pj == 1 and every.archs["hppu"].energy.mac_pj == 2
    assert every.archs["dense"].core_clock_mhz == every.archs["hppu"].core_clock_mhz == 250


def test_static_power_is_paid_over_the_whole_run_and_counted_on_chip(one_conv) -> None:
    """`static_power_mw` 250 mW: the component `static` holds 250 mW x the run's time (mW x ns
    = pJ), split over the layer-phases by their spans, which tile the run (`cycles` is each
    span rounded to whole cycles at its ends); every other
    action's joules and the timing stay (by delay, the mapping cannot move); the mapper's
    estimate pays it a cycle, 250 mW x 2 ns at 500 MHz, on top of DRAM's standby."""
    plain = load_arch(DENSE, BY_DELAY)
    leaky = load_arch(DENSE, [*BY_DELAY, "static_power_mw=250"])
    a, b = simulate("plain", plain, one_conv), simulate("leaky", leaky, one_conv)
    assert a.total_ps == b.total_ps
    static_j = 250e-3 * b.total_ps * 1e-12
    assert b.energy_by_action_j["static.power"] == pytest.approx(static_j, rel=1e-12)
    assert b.energy_by_component_j["static"] == pytest.approx(static_j, rel=1e-12)
    assert b.energy_j == pytest.approx(a.energy_j + static_j, rel=1e-12)
    assert "static.power" not in a.energy_by_action_j
    per_phase = b.layers["energy_j"].to_numpy() - a.layers["energy_j"].to_numpy()
    # a span in ps, its `cycles` rounded at both ends: within one 2 ns cycle's static energy
    spans_ps = (b.layers["cycles"] * 2_000).to_numpy()
    assert per_phase == pytest.approx(250e-3 * spans_ps * 1e-12, abs=250e-3 * 2e-9)
    assert per_phase.sum() == pytest.approx(static_j, rel=1e-12)
    views = [hardware_view(Accelerator(Simulator(), arch)) for arch in (plain, leaky)]
    assert views[1].static_pj_per_cycle - views[0].static_pj_per_cycle == pytest.approx(500)


@pytest.mark.parametrize("value", [-1, 2e6])
def test_static_power_out_of_range_is_refused(value) -> None:
    with pytest.raises(ConfigError, match=r"dense\.yaml: static_power_mw: "):
        load_arch(DENSE, [f"static_power_mw={value}"])


def test_the_estimate_prices_dram_standby_as_the_run_does_with_power_down() -> None:
    """With power-down the channels draw IDD2P (precharge) when idle and IDD3N while they
    move bytes: the estimate's standby is the idle one over the cycles, plus the active's
    excess over the time its bytes take at the streaming bandwidth. Off, both are IDD3N
    and a byte adds nothing. dense.yaml: one DDR4-2400 channel of 8 chips at 1.2 V, IDD3N
    43 mA, IDD2P 25 mA; 500 MHz (2 ns a cycle)."""
    views = {pd: hardware_view(Accelerator(Simulator(), load_arch(
        DENSE, [] if pd == "off" else [f"dram.power_down={pd}"]))) for pd in ("off", "precharge")}
    awake_mw, idle_mw = 1.2 * 8 * 43, 1.2 * 8 * 25
    assert views["off"].dram_awake_pj_per_byte == 0
    assert views["off"].static_pj_per_cycle - views["precharge"].static_pj_per_cycle == \
        pytest.approx((awake_mw - idle_mw) * 2, rel=1e-12)
    streaming = 19.2e9 * (1 - 420 / 9364) * (833.33 / 833)   # the ps grid's 833 ps tCK
    assert views["precharge"].dram_awake_pj_per_byte == pytest.approx(
        (awake_mw - idle_mw) * 1e9 / streaming, rel=1e-4)
