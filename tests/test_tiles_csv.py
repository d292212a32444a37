"""tiles.csv (`observe.tiles`, `desim run --tiles`): every tile the mapper planned."""

import pandas as pd
from small_experiments import lenet300_experiment

import desim
from desim.runner import run_file


def test_tiles_add_up_to_their_layer_phases(tmp_path):
    """Each layer-phase has as many tiles as layers.csv counts, and its tiles' MACs add up
    to its MACs there (nominal, effectual, processed); a folder written again without the
    tiles loses the stale tiles.csv."""
    experiment = lenet300_experiment(tmp_path / "lenet300.yaml", {
        "dense": {"method": "dense"}, "sparse": {"method": "magnitude", "sparsity": 0.5}})
    out = tmp_path / "out"
    result = desim.run(experiment, ["observe.tiles=true"], out=out)
    written = pd.read_csv(out / "tiles.csv", dtype={"layer": str})
    pd.testing.assert_frame_equal(written, result.tiles, check_dtype=False)
    keys = ["run", "layer", "phase"]
    per_phase = written.groupby(keys, sort=False).agg(
        tiles=("tile", "size"), macs=("macs", "sum"), effectual_macs=("effectual_macs", "sum"),
        processed_macs=("processed_macs", "sum"), last=("tile", "max")).reset_index()
    layers = result.layers.merge(per_phase, on=keys, suffixes=("", "_of_tiles"))
    assert len(layers) == len(result.layers[result.layers["tiles"] > 0])
    assert (layers["tiles"] == layers["tiles_of_tiles"]).all()
    assert (layers["last"] == layers["tiles"] - 1).all()   # numbered from 0 in each
    for column in ("macs", "effectual_macs", "processed_macs"):
        assert (layers[column] == layers[f"{column}_of_tiles"]).all(), column
    assert set(written["run"]) == {"dense", "sparse"}
    # when each ran: within its layer-phase's span, in order, the first starting it and the
    # last ending it (a layer-phase's span is its first fetch to its last write-back)
    spans = written.groupby(keys, sort=False).agg(
        first=("start_cycle", "min"), last_end=("end_cycle", "max")).reset_index()
    spans = result.layers.merge(spans, on=keys)
    assert (spans["first"] == spans["start_cycle"]).all()
    assert (spans["last_end"] == spans["end_cycle"]).all()
    assert (written["start_cycle"] < written["end_cycle"]).all()
    for _, tiles in written.groupby(keys, sort=False):
        assert tiles["start_cycle"].is_monotonic_increasing
        assert tiles["end_cycle"].is_monotonic_increasing
    run_file(experiment, out)   # observe off: no tiles.csv beside the new summary
    assert not (out / "tiles.csv").exists()


def test_a_compacting_designs_tiles_hold_only_the_channels_it_keeps(tmp_path):
    """With channel compaction (HPPU's level-1 selector) a channel with no work has no tile,
    and a pruned input channel is not read. The tiles still add up to the layer-phase's
    nominal, effectual and processed MACs: the nominal ones are the whole layer's, the same
    as the dense run's (the pairs of the dropped channels credited to the tiles; they had
    been left out, a compacted phase's MACs reading lower than the dense run's). Channel
    pruning of LeNet-300 at 50% leaves channels of a hidden layer's BP with no work."""
    experiment = lenet300_experiment(tmp_path / "lenet300.yaml", {
        "dense": {"method": "dense"}, "pruned": {"method": "channel", "sparsity": 0.5}})
    result = desim.run(experiment, ["observe.tiles=true",
                                    "arch.pruned.sparsity.channel_compaction=true",
                                    "arch.pruned.sparsity.skip_zero_weights=true"])
    keys = ["run", "layer", "phase"]
    sums = result.tiles.groupby(keys, sort=False)[
        ["macs", "effectual_macs", "processed_macs"]].sum().reset_index()
    layers = result.layers.merge(sums, on=keys, suffixes=("", "_of_tiles"))
    for column in ("macs", "effectual_macs", "processed_macs"):
        assert (layers[column] == layers[f"{column}_of_tiles"]).all(), column
    by_run = {run: rows.set_index(["layer", "phase"]) for run, rows in layers.groupby("run")}
    assert (by_run["pruned"]["macs"] == by_run["dense"]["macs"]).all()
    # the compacted phases do half the pairs or fewer: what pruning left them
    pruned = by_run["pruned"]
    assert (pruned["processed_macs"] <= pruned["macs"] // 2 + 1).sum() >= 1
