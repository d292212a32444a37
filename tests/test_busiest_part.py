"""What bound each layer-phase: layers.csv's `busiest_part` and `busiest_share`, and
summary.json's `time_by_busiest_part`. LeNet-300's first layer (784 x 300, batch 2, FP16)
on dense.yaml, made to wait on each part in turn by shrinking it or widening its rival."""

import pytest
from small_experiments import lenet300_experiment

import desim

FIRST_MACS = 784 * 300 * 2       # FF of the first linear layer
FIRST_WEIGHT_BYTES = 784 * 300 * 2  # its FP16 weights, every one through the NoC port


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    return lenet300_experiment(tmp_path_factory.mktemp("bound") / "lenet300.yaml",
                               {"dense": {"method": "dense"}})


def first_ff(result: desim.Result) -> dict:
    layers = result.layers
    return layers[(layers["layer"] == "0") & (layers["phase"] == "FF")].iloc[0].to_dict()


@pytest.mark.parametrize("overrides, part, link, floor_cycles", [
    # 16 MACs a cycle (16 clusters of one 1-MAC PE): the PE array, 29,400 cycles of MACs
    (["arch.*.pe_cluster.pes=1", "arch.*.pe_cluster.macs_per_pe_per_cycle=1"], "pe_array",
     "", FIRST_MACS // 16),
    # as built: the weights through the global buffer's 32 B/cycle NoC port, 14,700 cycles
    ([], "noc", "glb->r0_0", FIRST_WEIGHT_BYTES // 32),
    # a 256 B/cycle NoC: one DDR4-2400 channel, 19.2 GB/s = 38.4 B a 500 MHz cycle, for
    # 474,736 bytes (the weights and the input, bitmap-coded): 12,363 cycles
    (["arch.*.noc.link_bandwidth_bytes_per_cycle=256"], "dram", "", 474_736 * 10 // 384),
])
def test_the_part_that_bounds_a_layer_is_its_busiest(experiment, overrides, part, link,
                                                     floor_cycles):
    result = desim.run(experiment, overrides)
    row = first_ff(result)
    assert row["cycles"] >= floor_cycles  # the bound holds ...
    assert (row["busiest_part"], row["busiest_link"]) == (part, link)  # ... and is named
    # ... busy nearly all of the layer's span, at least the closed form's share of it (DRAM
    # adds row misses and refresh to its bandwidth's time)
    span = row["end_cycle"] - row["start_cycle"]
    assert floor_cycles / span - 1e-3 <= row["busiest_share"] <= 1.0
    assert row["busiest_share"] >= 0.9


def test_time_by_busiest_part_is_layers_csv_shared_out(experiment):
    """Each part's share of the run is the cycles of the layer-phases it was the busiest
    part of, over the run's; the shares add up to 1; `desim.Result` gives them as a table."""
    result = desim.run(experiment, ["arch.*.noc.link_bandwidth_bytes_per_cycle=256"])
    run = result.summary["runs"]["dense"]
    layers = result.layers
    assert (layers["busiest_share"] > 0).all() and (layers["busiest_share"] <= 1).all()
    cycles = layers.groupby("busiest_part")["cycles"].sum()
    assert run["time_by_busiest_part"] == {
        part: cycles.get(part, 0) / run["cycles"]
        for part in ("dram", "glb", "noc", "pe_array", "vector_unit")}
    assert sum(run["time_by_busiest_part"].values()) == pytest.approx(1.0, abs=1e-12)
    assert result.time_by_busiest_part()["dense"].to_dict() == run["time_by_busiest_part"]
