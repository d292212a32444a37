"""Bad input found when a file is read, with the file, the key and what was expected: the
cases an architect's first session hit (a boolean for a number, a key misspelt beside a
required one, a value that is not YAML, an arch_set line, a file of the other kind, a
clock faster than a picosecond, a link too slow to time)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from small_experiments import lenet300_experiment

from desim.configio import load_yaml, parse_yaml
from desim.errors import ConfigError
from desim.experiment import apply_overrides, load_arch, load_design, load_experiment

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "experiments" / "quickstart.yaml"
DENSE = ROOT / "configs" / "arch" / "dense.yaml"


@pytest.mark.parametrize("overrides, fragments", [
    (["arch.dense.pe_cluster.pes=true"],
     ["dense.yaml: pe_cluster.pes: expected a number, got a boolean (True)"]),
    (["arch.dense.sparsity.skip_zero_weights=yes please"],
     ["sparsity.skip_zero_weights: expected true or false, got 'yes please'"]),
    (["arch.dense.noc.shape=[2,"], ["noc.shape: the value '[2,' is not valid YAML"]),
    (["arch.dense.noc={topology: mesh, shape: [2, 2], topology: ring}"],
     ["dense.yaml: noc.topology: the value '{topology: mesh, shape: [2, 2], topology: ring}' "
      "is not valid YAML (key 'topology' given twice, first on line 1)"]),
    # a balancer is one of three; 1 is not read as true, nor a typo as anything
    (["arch.dense.mapping.load_balance=1"],
     ["dense.yaml: mapping.load_balance: expected true (ideal: every PE), clusters (the "
      "clusters evened) or false (got 1)"]),
    (["arch.dense.mapping.load_balance=cluster"],
     ["mapping.load_balance: expected true (ideal: every PE), clusters (the clusters evened) "
      "or false (got 'cluster')"]),
    # an operand's zeros skipped in the phases it takes part in, named (X: FF, WG)
    (["arch.dense.sparsity.skip_zero_activations=[BP]"],
     ["dense.yaml: sparsity.skip_zero_activations: expected true, false, or a non-empty list "
      "of the phases to skip them in (FF and WG, distinct) (got ['BP'])"]),
    (["arch.dense.sparsity.skip_zero_gradients=[WG, WG]"],
     ["sparsity.skip_zero_gradients: expected true, false, or a non-empty list of the phases "
      "to skip them in (BP and WG, distinct)"]),
    # Procrustes' decay of DropBack's initial values: DropBack's alone, at most 1
    (["runs.1.pruning.init_decay=0.9"],
     ["runs.1.pruning.init_decay: method 'hybrid' does not use it"]),
    (["runs.1.pruning={method: dropback, sparsity: 0.9, init_decay: 1.5}"],
     ["runs.1.pruning.init_decay: Input should be less than or equal to 1 (got 1.5)"]),
    # training keeps masks, not ternary or circulant values: refused, not run unternary
    (["runs.1.pruning={method: ternarize}", "workload.training={iterations: 2}",
      "workload.data=digits"],
     ["quickstart.yaml: runs.1.pruning: run 'hppu': training keeps a pruning's zeros, not its "
      "values' form: the ternary weights of pruning ternarize would not stay so after an SGD "
      "step (training them is not modelled); let this run not train (runs.1.workload_set: "
      "[training=null]: it prunes the untrained model)"]),
    (["runs.1.pruning={method: block_circulant, b: 4}", "workload.training={iterations: 2}",
      "workload.data=digits"],
     ["runs.1.pruning: run 'hppu': training keeps a pruning's zeros, not its values' form: "
      "the block-circulant weights"]),
    (["runs.1.pruning.sparsty=0.5"],
     ["runs.1.pruning.sparsty: unknown key; expected one of: ", "sparsity"]),
    (["runs.0.arch_set=[noc.shap=2]"],
     ["quickstart.yaml: runs.0.arch_set: noc.shap: unknown key",
      "(in the architecture dense.yaml)"]),
    (["runs.0.arch_set=[noc.shape]"],
     ["runs.0.arch_set: expected key.path=value, got 'noc.shape'"]),
    # an empty key set the top level's key "" ("(top level): unknown key"); a run by a
    # name it does not have
    (["=3"], ["quickstart.yaml: expected key.path=value, got '=3' (an empty key)"]),
    (["workload..batch=2"],
     ["quickstart.yaml: expected key.path=value, got 'workload..batch=2' (an empty key)"]),
    (["arch.dense.dram..channels=2"],
     ["dense.yaml: expected key.path=value, got 'dram..channels=2' (an empty key)"]),
    # a design's weight storage that the run's weights do not fit: no index for zeros
    # anywhere (the FF read a fifth of csr's bytes), a ternary code for fp16 weights
    (["arch.hppu.sparsity.weight_format=values_only"],
     ["quickstart.yaml: runs.1.pruning: run 'hppu': its design stores the weights "
      "values_only (no index: sparsity.weight_format in ../arch/hppu_like.yaml), and pruning "
      "hybrid leaves zeros whose positions the values alone cannot give; expected a pruning "
      "whose structure implies them (permuted_diagonal, block_circulant, dense)"]),
    (["arch.dense.sparsity.weight_bits=2"],
     ["quickstart.yaml: runs.0.pruning: run 'dense': its design stores a weight in 2 bits "
      "(sparsity.weight_bits in ../arch/dense.yaml), a ternary code, and pruning dense does "
      "not ternarize the weights; expected ternarize, ternary: true, or more bits"]),
    # an empty design name left the results' arch column blank
    (["arch.dense.name=''"],
     ["dense.yaml: name: expected a name for the design (the results' arch column), not an "
      "empty one"]),
    # a number in quotes is a string: pydantic took "8" as 8 (and refused "1e3")
    (["arch.dense.dram.channels='8'"],
     ["dense.yaml: dram.channels: expected a number, got the string '8' (a number in quotes: "
      "write it without them)"]),
    (["runs.1.pruning.sparsity='0.5'"],
     ["quickstart.yaml: runs.1.pruning.sparsity: expected a number, got the string '0.5'"]),
    (["runs.hpu.pruning.sparsity=0.5"],
     ["quickstart.yaml: runs.hpu.pruning.sparsity: no list item 'hpu'; expected an index, "
      "0 to 1, or a name: dense, hppu"]),
    (["workload.input_shape.3=1"],
     ["quickstart.yaml: workload.input_shape.3: no list item '3'; expected an index, 0 to 2"]),
    # named as the key it is, and the --set that gave it (was "address mapping: ...")
    (["arch.dense.dram.channels=3"],
     ["dense.yaml: dram.channels: must be a power of two (1, 2, 4, ...): the address mapping "
      "picks a channel by address bits (got 3) (set by --set arch.dense.dram.channels=3"]),
    (["arch.dense.core_clock_mhz=2e6"],
     ["dense.yaml: core_clock_mhz: Input should be less than or equal to 1000000"]),
    # a clock written in GHz
    (["arch.dense.core_clock_mhz=0.8"],
     ["dense.yaml: core_clock_mhz: 0.8 MHz; the clock is in MHz (0.8 GHz is 800); expected "
      "at least 1 MHz"]),
    (["arch.dense.noc.link_bandwidth_bytes_per_cycle=1e-12"],
     ["noc.link_bandwidth_bytes_per_cycle: 1e-12 bytes a cycle at 500.0 MHz is less than "
      "a byte a second"]),
    # YAML's infinities and NaN (and the strings pydantic would read as them) are no number
    # to price, time or size a design with
    (["arch.dense.energy.noc_pj_per_bit_hop=inf"],
     ["dense.yaml: energy.noc_pj_per_bit_hop: Input should be a finite number (got 'inf')"]),
    (["arch.dense.core_clock_mhz=.inf"],
     ["dense.yaml: core_clock_mhz: Input should be a finite number (got inf)"]),
    (["runs.1.pruning.threshold_ratio=.nan"],
     ["quickstart.yaml: runs.1.pruning.threshold_ratio: Input should be a finite number"]),
    (["claims=[{metric: runs.dense.cycles, paper: 1, tolerance: .inf}]"],
     ["quickstart.yaml: claims.0.tolerance: Input should be a finite number (got inf)"]),
    # a bank narrower than a byte (512 KiB in a million banks), or one row of the banks
    # larger than the whole buffer
    (["arch.dense.global_buffer.banks=1000000"],
     ["dense.yaml: global_buffer.banks: 1000000 banks of 16 bytes (16000000 bytes a row) do "
      "not fit in capacity_kib 512 (524288 bytes)"]),
    (["arch.dense.global_buffer.capacity_kib=16", "arch.dense.global_buffer.bank_width_bytes=4096"],
     ["dense.yaml: global_buffer.banks: 16 banks of 4096 bytes (65536 bytes a row) do not fit "
      "in capacity_kib 16 (16384 bytes)"]),
    (["claims=[{metric: runs.dense.cycels, paper: 1, tolerance: 1}]"],
     ["claims.0.metric: 'runs.dense.cycels': no runs metric 'cycels'; expected one of: "
      "cycles"]),
    # a whole number beyond 32 bits in a design: the mapper's tile counts overflowed with a
    # traceback (a local buffer of 2^40 KiB, 2^40 bitmap bits a cycle), or a fill of 10^18
    # cycles a tile wrapped around to negative cycles in summary.json
    (["arch.dense.pe_cluster.pipeline_cycles=1000000000000000000"],
     ["dense.yaml: pe_cluster.pipeline_cycles: expected at most 2147483647 (2^31 - 1), got "
      "1000000000000000000"]),
    (["arch.hppu.pe_cluster.local_buffer_kib=1099511627776"],
     ["hppu_like.yaml: pe_cluster.local_buffer_kib: expected at most 2147483647"]),
    (["arch.hppu.selector.entries_per_cycle=2147483648"],
     ["hppu_like.yaml: selector.entries_per_cycle: expected at most 2147483647"]),
    # a finite price whose energies are not: 10^308 pJ a MAC made energy_j infinite and
    # the energy ratios NaN in summary.json
    (["arch.dense.energy.mac_pj=1.7e308"],
     ["dense.yaml: energy.mac_pj: Input should be less than or equal to 1000000"]),
    # an empty shape is no shape: it was run as the model's default without a word
    (["workload.input_shape=[]"],
     ["quickstart.yaml: workload.input_shape: List should have at least 1 item after "
      "validation, not 0 (got [])"]),
    # an empty arch path read as "'' is a directory", a device as "not found"
    (["runs.0.arch=''"], ["quickstart.yaml: runs.0.arch: empty; expected an architecture "
                          "YAML file's path"]),
    (["runs.0.arch=/dev/null"], ["quickstart.yaml: runs.0.arch: '/dev/null' is not a regular "
                                 "file"]),
    # a ramp for a gradual schedule that is off was ignored without a word
    (["workload.training={iterations: 2, ramp_fraction: 0.3}"],
     ["quickstart.yaml: workload.training.ramp_fraction: it shapes the gradual schedule, "
      "which is off"]),
    # a gradual schedule no run follows (only magnitude pruning has one), and SET's or
    # RigL's regrowth that never happens: each ran as if it were off, without a word
    (["workload.training={iterations: 4, gradual: true}"],
     ["quickstart.yaml: workload.training.gradual: only magnitude pruning has a gradual "
      "schedule, and no run that trains with it prunes by magnitude (dense, hybrid): drop "
      "it, or prune by magnitude"]),
    (["runs.1.pruning={method: set, sparsity: 0.5, regrow_fraction: 0.9}"],
     ["quickstart.yaml: runs.1.pruning.regrow_fraction: SET drops and regrows weights "
      "between training iterations, and this run's workload trains none "
      "(workload.training): drop it, or train"]),
    (["runs.1.pruning={method: rigl, sparsity: 0.5}", "workload.training={iterations: 4}"],
     ["quickstart.yaml: runs.1.pruning.update_every: RigL updates its masks every 10 "
      "iterations, and the workload trains 4: they would never move; expected at most 4"]),
    # a timer for a power-down that is off was ignored without a word
    (["arch.dense.dram.power_down_idle_cycles=100"],
     ["dense.yaml: dram.power_down_idle_cycles: power_down is off, so no timer runs"]),
    # a weights' line on a design that reads none (dense weights, no selector) changed
    # nothing, without a word
    (["arch.dense.sparsity.weight_group=16"],
     ["dense.yaml: sparsity.weight_group: sets the weights' line, which only the formats "
      "line_bitmap, csr and csc and a selector read; this design stores its weights as dense "
      "and has no selector"]),
    # the optimizer's weight update: an inference has none, and it runs on a vector unit
    (["workload.weight_update=momentum", "workload.inference=true"],
     ["quickstart.yaml: workload.weight_update: an inference updates no weight, got "
      "'momentum'; drop it or the inference"]),
    (["workload.weight_update=momentum", "arch.dense.vector_unit=null"],
     ["quickstart.yaml: workload.weight_update: run 'dense' has no vector unit in its "
      "architecture ../arch/dense.yaml to apply the weight update (momentum) on"]),
    (["workload.weight_update=rmsprop"],
     ["quickstart.yaml: workload.weight_update: Input should be 'none', 'sgd', 'momentum' "
      "or 'adam' (got 'rmsprop')"]),
    # what the clusters are dealt: one partition, or a list to choose from, each once
    (["arch.dense.mapping.partition=[rows, rows]"],
     ["dense.yaml: mapping.partition: expected one of channels, rows, reduction, auto, or a "
      "list of distinct ones to choose from (got ['rows', 'rows'])"]),
    (["arch.dense.mapping.partition=[]"],
     ["dense.yaml: mapping.partition: expected one of channels, rows, reduction, auto, or a "
      "list of distinct ones to choose from (got [])"]),
    (["arch.dense.mapping.partition=[rows, diagonal]"],
     ["dense.yaml: mapping.partition: expected one of channels, rows, reduction, auto, or a "
      "list of distinct ones to choose from (got ['rows', 'diagonal'])"]),
    # a price of adds no design of this partition makes
    (["arch.dense.energy.psum_add_pj=0.5"],
     ["dense.yaml: energy.psum_add_pj: this design's clusters are never dealt a reduction "
      "(mapping.partition), so no partial sums are added at its global buffer"]),
    # a run's name goes into file names (waves_<run>.vcd): 250 characters failed to write
    # its waveform after the whole simulation
    ([f"runs.1.name={'r' * 65}"],
     ["quickstart.yaml: runs.1.name: String should have at most 64 characters"]),
    # a claim's empty path passed the check and was MISSING in the report; an empty `over`
    # was taken for none, the claim judged as the bare metric
    (["claims=[{metric: comparison.hppu.speedup, over: '', paper: 1, tolerance: 1}]"],
     ["quickstart.yaml: claims.0: metric and over name a dotted path of summary.json"]),
    # a --set that leaves another key of the file wrong: the file's key is named, and the
    # --set that made it wrong, though it set none of that key
    (["arch.dense.noc={topology: tree, shape: [1, 2], link_bandwidth_bytes_per_cycle: 8, "
      "hop_latency_cycles: 1}"],
     ["dense.yaml: global_buffer_router: 'r0_0' is not a router of the NoC; routers: r0, r1, "
      "r2 (with --set arch.dense.noc={topology: tree, shape: [1, 2], "
      "link_bandwidth_bytes_per_cycle: 8, hop_latency_cycles: 1}, for run dense)"]),
    # an accumulator narrower than its products (its energy and DRAM bytes fell), a
    # ternary one, a stored weight of 1,000 bits
    (["arch.dense.pe_cluster.accumulator=fp8"],
     ["dense.yaml: pe_cluster.accumulator: 'fp8' is narrower than the 'fp16' products it "
      "would add up; expected one at least as wide (or none: the datapath's)"]),
    (["arch.dense.pe_cluster.precision=ternary", "arch.dense.pe_cluster.accumulator=ternary"],
     ["dense.yaml: pe_cluster.accumulator: a ternary code {-1, 0, +1} holds no sum"]),
    (["arch.dense.sparsity.weight_bits=1000"],
     ["dense.yaml: sparsity.weight_bits: Input should be less than or equal to 32"]),
    # a key inside an optional component the design lacks added the component with every
    # other key at its default: `vector_unit.fused_residual=false` gave a systolic array a
    # 64-lane vector unit, and simulated vector layers it had not before
    (["arch.dense.speculator.ops_per_cycle=4096"],
     ["dense.yaml: speculator: the design has no speculator; setting a key inside it would "
      "add one, every other key at its default. To add it, give the section whole: "
      "speculator={ops_per_cycle: 4096} (with --set arch.dense.speculator.ops_per_cycle=4096, "
      "for run dense)"]),
    (["arch.*.pe_cluster.systolic.cols=16"],
     ["dense.yaml: pe_cluster.systolic: the design has no pe_cluster.systolic;", "give the "
      "section whole, with its required rows: pe_cluster.systolic={cols: 16} (with --set "
      "arch.*.pe_cluster.systolic"]),
    (["arch.hppu.weight_generator.seed.bits=8"],
     ["give the section whole, with its required values_per_cycle: "
      "weight_generator={seed: {bits: 8}}"]),
    # a value quoted in an error is cut short: a pasted blob made a message of megabytes
    ([f"workload.data={'x' * 10_000}"],
     ["quickstart.yaml: workload.data: Input should be 'digits', 'mnist' or 'random' (got "
      f"'{'x' * 30}", f"{'x' * 30}...{'x' * 30}"]),
])
def test_bad_input_names_file_key_and_expectation(overrides, fragments):
    with pytest.raises(ConfigError) as err:
        exp = load_experiment(QUICKSTART, overrides)
        for arch in exp.archs.values():   # a clock is checked when the processor is built
            from arch.accelerator import Accelerator
            from desim.module import Simulator
            Accelerator(Simulator(), arch)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_a_run_is_set_by_its_name_as_by_its_index():
    """`runs.hppu.` is the run named hppu, `runs.1.` here: the same experiment either way,
    the other run untouched; a name two runs share is refused, not one of them picked."""
    by_name = load_experiment(QUICKSTART, ["runs.hppu.pruning.sparsity=0.55"])
    by_index = load_experiment(QUICKSTART, ["runs.1.pruning.sparsity=0.55"])
    assert by_name.spec == by_index.spec
    assert [run.pruning.sparsity for run in by_name.spec.runs][1] == 0.55
    assert by_name.spec.runs[0] == load_experiment(QUICKSTART).spec.runs[0]
    data = {"runs": [{"name": "a"}, {"name": "a"}]}
    with pytest.raises(ConfigError, match="2 list items are named 'a'; give its index"):
        apply_overrides(data, ["runs.a.arch=x"], "f.yaml")


def test_a_set_item_that_replaces_an_earlier_one_is_refused():
    """The same key twice (by name or index), or a section after one of its keys: the
    last would win and the other be dropped without a word. A key after its section sets
    a part of it; `arch.*.` under `arch.<run>.` is the documented precedence."""
    with pytest.raises(ConfigError, match=r"--set workload.batch=4 replaces --set "
                                          r"workload.batch=2, given before it: keep one"):
        load_experiment(QUICKSTART, ["workload.batch=2", "workload.batch=4"])
    with pytest.raises(ConfigError, match=r"runs.hppu.pruning.sparsity=0.9 replaces --set "
                                          r"runs.1.pruning.sparsity=0.5"):
        load_experiment(QUICKSTART, ["runs.1.pruning.sparsity=0.5",
                                     "runs.hppu.pruning.sparsity=0.9"])
    with pytest.raises(ConfigError, match=r"replaces --set arch.hppu.pe_cluster.pes=32"):
        load_experiment(QUICKSTART, ["arch.hppu.pe_cluster.pes=32",
                                     "arch.hppu.pe_cluster={pes: 16}"])
    exp = load_experiment(QUICKSTART, ["runs.1.pruning={method: magnitude, sparsity: 0.5}",
                                       "runs.1.pruning.sparsity=0.6",
                                       "arch.*.pe_cluster.pes=32", "arch.hppu.pe_cluster.pes=16"])
    assert exp.spec.runs[1].pruning.sparsity == 0.6
    assert [exp.archs[run.name].pe_cluster.pes for run in exp.spec.runs] == [32, 16]


def test_a_schedule_a_run_follows_validates():
    exp = load_experiment(QUICKSTART, ["runs.1.pruning={method: magnitude, sparsity: 0.5}",
                                       "workload.training={iterations: 4, gradual: true}"])
    assert exp.workloads["hppu"].training.gradual
    exp = load_experiment(QUICKSTART, ["runs.1.pruning={method: rigl, sparsity: 0.5, "
                                       "update_every: 4}", "workload.training={iterations: 4}"])
    assert exp.spec.runs[1].pruning.update_every == 4


def test_a_section_given_whole_adds_a_component_and_a_default_section_takes_keys(tmp_path):
    arch = load_arch(DENSE, ["speculator={ops_per_cycle: 4096}"])
    assert arch.speculator is not None and arch.speculator.ops_per_cycle == 4096
    data = yaml.safe_load(DENSE.read_text())
    del data["mapping"]  # a section with defaults, no component: a key inside it is set
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump(data))
    assert load_arch(bare, ["mapping.objective=energy"]).mapping.objective == "energy"


@pytest.mark.parametrize("edges, message", [
    ("[[a, b], [b, b]]", "noc.edges.1: router 'b' is linked to itself"),
    ("[[a, b], [c, d]]", "noc: the NoC graph is not connected: c, d cannot reach the rest"),
    # a router may not take the name of a node the processor adds: it would replace the
    # router (dram) or fail when that node is attached (glb, cluster_<router>)
    ("[[dram, b]]", "noc.edges: 'dram': routers named as the processor's own nodes"),
    # a name is part of module paths, links' names ('u->v') and waveform scopes: "c->d"
    # broke the report after the run, "r 0" beside "r_0" the waveform
    ("[[a, c->d]]", "noc.edges.0: router name 'c->d': expected letters, digits and _ only"),
    ("[['r 0', r_0]]", "noc.edges.0: router name 'r 0': expected letters, digits and _ only"),
    ("[[a, b], {u: b, v: c, bandwidth_bytes_per_cycle: 1.0e-12}]",
     "noc.edges.1.bandwidth_bytes_per_cycle: 1e-12 bytes a cycle at"),
    ("[[glb, b], [b, cluster_glb]]",
     "noc.edges: 'cluster_glb', 'glb': routers named as the processor's own nodes"),
    ("[[a, c]]", "global_buffer_router: 'b' is not a router of the NoC; routers: a, c"),
])
def test_a_noc_graph_error_names_its_file_and_key_under_noc(edges, message, tmp_path):
    """The graph's checks name the key as the schema's do, and the architecture file
    wherever the design is loaded from one: `load_arch`, an experiment's runs (its
    `load_experiment`, `desim.run`), not only the command line."""
    import desim

    arch, experiment = tmp_path / "arch.yaml", tmp_path / "experiment.yaml"
    edit = [f"noc={{topology: edges, edges: {edges}, link_bandwidth_bytes_per_cycle: 8, "
            "hop_latency_cycles: 1}", "global_buffer_router=b"]
    arch.write_text(yaml.safe_dump(apply_overrides(yaml.safe_load(DENSE.read_text()), edit,
                                                   str(arch))))
    experiment.write_text(QUICKSTART.read_text().replace("../arch/dense.yaml", str(arch))
                          .replace("../arch/", f"{DENSE.parent}/"))
    for load, path in ((load_arch, arch), (load_design, arch), (load_experiment, experiment),
                       (desim.run, experiment)):
        with pytest.raises(ConfigError) as err:
            load(path)
        assert err.value.file == str(arch) and str(err.value).startswith(f"{arch}: {message}")


def test_a_misspelt_key_is_named_before_the_missing_one_it_leaves(tmp_path):
    arch = tmp_path / "arch.yaml"
    arch.write_text(DENSE.read_text().replace("capacity_kib:", "capacty_kib:"))
    with pytest.raises(ConfigError, match="global_buffer.capacty_kib: unknown key; expected "
                                          "one of: bank_width_bytes, banks, capacity_kib"):
        load_arch(arch)


@pytest.mark.parametrize("text, problem", [
    ("name: x\nbatch: " + "9" * 5000 + "\n", "not valid YAML (a number of more digits than "
     "Python reads)"),
    ("notes: " + "[" * 2000 + "]" * 2000 + "\n", "not valid YAML (nested too deeply)"),
    # an alias bomb: each level holds the one below nine times
    ("".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9) if i else 'x'}]\n"
             for i in range(8)), "not valid YAML (its aliases expand to more than 1,000,000 "
     "values)"),
])
def test_yaml_python_cannot_take_is_bad_input_not_a_traceback(text, problem, tmp_path):
    """PyYAML reads each of these and Python then fails on it (a RecursionError, int()'s
    digit limit), or desim would walk billions of values (a memory bomb of aliases)."""
    from desim.configio import load_yaml

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert str(err.value) == f"{path}: {problem}"


def test_a_key_given_twice_is_refused_with_its_path_and_both_lines(tmp_path):
    """YAML forbids it; PyYAML alone would keep the second `name:` without a word. The error
    names the key's whole path (list items by index), as a schema error would."""
    arch = tmp_path / "arch.yaml"
    arch.write_text(DENSE.read_text().replace("name: dense\n", "name: dense\nname: other\n"))
    line = arch.read_text().splitlines().index("name: other") + 1
    with pytest.raises(ConfigError, match=rf"arch\.yaml: name: line {line}, column 1: not valid "
                                          rf"YAML \(key 'name' given twice, first on line "
                                          rf"{line - 1}\)"):
        load_arch(arch)
    nested = tmp_path / "nested.yaml"
    nested.write_text(DENSE.read_text().replace("  banks: 16\n", "  banks: 16\n  banks: 8\n"))
    with pytest.raises(ConfigError, match=r"nested\.yaml: global_buffer\.banks: line \d+, "
                                          r"column 3: not valid YAML \(key 'banks' given twice"):
        load_arch(nested)
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(QUICKSTART.read_text().replace(
        "{method: hybrid, sparsity: 0.7,", "{method: hybrid, sparsity: 0.7, sparsity: 0.5,"))
    line, column = next((i, text.index("sparsity: 0.5") + 1) for i, text
                        in enumerate(experiment.read_text().splitlines(), 1)
                        if "sparsity: 0.5" in text)
    with pytest.raises(ConfigError) as err:
        load_experiment(experiment)
    assert err.value.key == "runs.1.pruning.sparsity"
    assert str(err.value).startswith(
        f"{experiment}: runs.1.pruning.sparsity: line {line}, column {column}: not valid YAML "
        f"(key 'sparsity' given twice, first on line {line})")


def test_every_shipped_yaml_file_loads():
    """No shipped file gives a key twice (configs/ and examples/ alike)."""
    paths = [p for folder in ("configs", "examples") for p in (ROOT / folder).rglob("*.y*ml")]
    assert len(paths) > 30
    for path in paths:
        load_yaml(path)


def test_a_file_of_the_other_kind_says_which_it_is():
    with pytest.raises(ConfigError, match="dense.yaml: this is an architecture file, not an "
                                          "experiment.*`desim topology FILE -o x.png` checks "
                                          "and draws the design alone"):
        load_experiment(DENSE)
    with pytest.raises(ConfigError, match="a reram_crossbar design runs through "
                                          "examples/bitslice_reram.py"):
        load_experiment(ROOT / "configs" / "arch" / "reram_bitslice.yaml")
    with pytest.raises(ConfigError, match="quickstart.yaml: this is an experiment file, not "
                                          "an architecture"):
        load_design(QUICKSTART)


def test_a_number_in_exponent_form_is_a_number():
    """PyYAML reads `1e3` and `1.0e3` as text (YAML 1.1 wants a dot and a signed exponent);
    desim reads them as YAML 1.2 does: it had refused `capacity_kib: 1e3`, with a hint that
    `1.0e3` would do, which PyYAML read as text too."""
    arch = load_experiment(QUICKSTART, ["arch.dense.global_buffer.capacity_kib=1e3",
                                        "arch.dense.core_clock_mhz=1.0e3",
                                        "arch.dense.energy.mac_pj=2.5E-1"]).archs["dense"]
    assert arch.global_buffer.capacity_kib == 1000 and arch.core_clock_mhz == 1000
    assert arch.energy.mac_pj == 0.25
    assert parse_yaml("[1e3, '1e3', 1e, e3]") == [1000.0, "1e3", "1e", "e3"]


def test_every_shipped_architecture_still_validates():
    """The checks above refuse no design this repository ships."""
    for path in sorted((ROOT / "configs" / "arch").glob("*.yaml")):
        load_design(path)


def test_a_pruning_parameter_takes_no_boolean_for_a_number() -> None:
    """The pruning section is `Strict` like every other: `seed: true` is not seed 1."""
    from mappings.specs import PruningSpec

    with pytest.raises(ValueError, match="expected a number, got a boolean"):
        PruningSpec(method="magnitude", sparsity=0.5, seed=True)


def test_a_dram_channel_count_is_bounded() -> None:
    """Each channel is a controller built and simulated: 2^24 of them (a power of two, as
    the address mapping asks) hung the run, then ran it out of memory."""
    with pytest.raises(ConfigError) as err:
        load_experiment(QUICKSTART, ["arch.dense.dram.channels=16777216"])
    assert ("dense.yaml: dram.channels: Input should be less than or equal to 4096 (got "
            "16777216)") in str(err.value)
    load_experiment(QUICKSTART, ["arch.dense.dram.channels=4096"])


def test_a_batch_beyond_64_bits_is_bad_input() -> None:
    """torch sizes are 64-bit: a larger batch is refused by the spec, not a traceback."""
    from mappings.specs import WorkloadSpec

    with pytest.raises(ValueError, match="less than 9223372036854775808"):
        WorkloadSpec(model="lenet5", batch=10**20)


def test_a_directory_given_for_a_file_is_said_to_be_one(tmp_path):
    """Not "no such file", which sends the user looking for a typo in a path that exists."""
    from mappings.scalesim import read_topology_rows

    for read, expected in ((load_yaml, "a YAML file"), (load_arch, "a YAML file"),
                           (read_topology_rows, "a SCALE-Sim topology CSV")):
        with pytest.raises(ConfigError) as err:
            read(tmp_path)
        assert str(err.value) == f"{tmp_path}: is a directory; expected {expected}"
    with pytest.raises(ConfigError) as err:  # an experiment may be a results folder
        load_experiment(tmp_path)
    assert str(err.value) == (f"{tmp_path}: is a directory without a config.json; expected an "
                              "experiment YAML file, or a results folder (`desim run --out`) "
                              "to run again")
    pipe = tmp_path / "pipe.yaml"  # reading a FIFO would wait for a writer
    os.mkfifo(pipe)
    with pytest.raises(ConfigError) as err:
        load_yaml(pipe)
    assert str(err.value) == (f"{pipe}: not a regular file (a pipe or a device); expected a "
                              "YAML file")


PERMDNN_LENET300 = ROOT / "configs" / "experiments" / "permdnn_lenet300.yaml"


@pytest.mark.parametrize("overrides, fragments", [
    # a sparsity is the target of the methods that rank units: no default of 0 (no pruning)
    (["runs.0.pruning={method: magnitude}"],
     ["runs.0.pruning.sparsity: method 'magnitude' needs a target sparsity"]),
    # n:m's sparsity is 1 - n/m: a sparsity beside it would be silently dropped
    (["runs.0.pruning={method: n_m, n: 2, m: 4, sparsity: 0.9}"],
     ["runs.0.pruning.sparsity: method 'n_m' does not use it (it takes n, m, ",
      "its sparsity is 1 - n/m"]),
    # the file's sparsity: 0.75 stays when only the method changes
    (["runs.0.pruning.method=dense"],
     ["permdnn_lenet300.yaml: runs.0.pruning.sparsity: method 'dense' does not use it (it "
      "takes no parameters); drop it (--set: give the whole mapping, pruning={method: dense"]),
    (["runs.0.pruning={method: hybrid, sparsity: 0.5, k: 5}"],
     ["runs.0.pruning.k: method 'hybrid' does not use it (it takes sparsity, channel_share"]),
    (["runs.0.pruning={method: magnitude, sparsity: 0.5, threshold_ratio: 0.5}"],
     ["runs.0.pruning.threshold_ratio: method 'magnitude' does not use it"]),
    (["runs.1.pruning.seed=3", "runs.0.pruning.seed=3"],
     ["runs.0.pruning.seed: method 'magnitude' does not use it"]),
])
def test_a_pruning_parameter_the_method_does_not_use_is_refused(overrides, fragments):
    """`PruningSpec` takes only the parameters its method reads, and a target sparsity
    from the methods that have one: a parameter dropped silently ran another experiment
    than the file said (n_m at 0.5 for a sparsity of 0.9, magnitude at 0 for none)."""
    with pytest.raises(ConfigError) as err:
        load_experiment(PERMDNN_LENET300, overrides)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_a_method_with_its_own_parameters_validates() -> None:
    """What the stricter check still takes: the whole mapping replaced, a method's own
    parameters (permuted_diagonal's seed, magnitude's layer choice, ternary's ratio)."""
    load_experiment(PERMDNN_LENET300, ["runs.0.pruning={method: dense}", "runs.1.pruning.seed=3"])
    load_experiment(PERMDNN_LENET300, ["runs.1.pruning.seed=3",
                                       "runs.0.pruning={method: magnitude, sparsity: 0.5, "
                                       "skip_last_linear: false, ternary: true, "
                                       "threshold_ratio: 0.5}"])


@pytest.mark.parametrize("overrides, key", [
    (["workload.speculative_relu=true"], "workload.speculative_relu"),
    (["runs.1.workload_set=[speculative_relu=true]"], "runs.1.workload_set"),
])
def test_a_speculative_workload_needs_a_speculator(overrides, key):
    """A speculative capture zeroes the outputs the prediction zeroes: on a design without a
    speculator (dense.yaml, hppu_like.yaml) that changed its work without a word."""
    with pytest.raises(ConfigError) as err:
        load_experiment(QUICKSTART, overrides)
    assert err.value.key == key
    assert err.value.file == str(QUICKSTART)
    assert "has no speculator in its architecture ../arch/" in err.value.message


def test_a_speculative_workload_on_a_speculator_validates():
    load_experiment(ROOT / "configs" / "experiments" / "trainer_speculation_accuracy.yaml")


def test_training_on_random_data_is_refused_before_any_training():
    """Training reports held-out accuracy, which random data has none of: `desim check`
    passed it and `desim run` failed after training with a ValueError's traceback."""
    with pytest.raises(ConfigError) as err:
        load_experiment(ROOT / "configs" / "experiments" / "peak_efficiency.yaml",
                        ["workload.training={iterations: 2}"])
    assert err.value.key == "workload.training"
    assert "data: random has none of; use data: digits or mnist" in err.value.message


@pytest.mark.parametrize("override, key", [
    ("workload.seed=99999999999999999999", "workload.seed"),
    ("workload.seed=-1", "workload.seed"),
    ("runs.1.workload_set=[seed=99999999999999999999]", "runs.1.workload_set.seed"),
    ("runs.1.pruning={method: set, sparsity: 0.5, seed: 18446744073709551616}",
     "runs.1.pruning.seed"),
    ("sweep={mode: random, budget: 2, seed: -3, axes: {workload.batch: {low: 1, high: 4}}}",
     "sweep.seed"),
])
def test_a_seed_the_generators_cannot_take_is_bad_input(override, key):
    """torch's manual_seed overflowed on 10^20 (a traceback in desim check) and numpy's
    default_rng refuses a negative seed: every seed is 0 <= seed < 2**63."""
    with pytest.raises(ConfigError) as err:
        load_experiment(QUICKSTART, [override])
    assert err.value.key == key


def test_the_largest_seed_is_taken():
    load_experiment(QUICKSTART, [f"workload.seed={2**63 - 1}"])


SCALESIM_RESNET18 = ROOT / "configs" / "experiments" / "scalesim_resnet18.yaml"


@pytest.mark.parametrize("overrides, key, fragment", [
    (["workload.batch=4"], "workload.batch",
     "a SCALE-Sim topology is dense layers at batch 1 (its CSV has no batch), got 4"),
    (["runs.1.workload_set=[batch=2]"], "runs.1.workload_set.batch", "got 2"),
    (["workload.training={iterations: 2}"], "workload.training",
     "a SCALE-Sim topology has no model to train"),
    (["runs.1.pruning={method: magnitude, sparsity: 0.9}"], "runs.1.pruning",
     "run 'ws' prunes a SCALE-Sim topology, whose layers are dense"),
    # shapes come from the CSV, and it has no values: these were recorded, not used
    (["workload.seed=3"], "workload.seed", "no data, weights or classes; drop seed"),
    (["workload.data=mnist", "workload.num_classes=4"], "workload.data",
     "drop data, num_classes"),
    (["runs.0.workload_set=[model_args.cifar=true]"], "runs.0.workload_set.model_args",
     "drop model_args"),
])
def test_a_scalesim_topology_is_dense_at_batch_one(overrides, key, fragment):
    """A topology's layers are read dense at batch 1: a batch of 4 and magnitude pruning
    gave batch 1 dense's MACs and cycles while config.json recorded batch 4 and magnitude."""
    with pytest.raises(ConfigError) as err:
        load_experiment(SCALESIM_RESNET18, overrides)
    assert err.value.key == key
    assert fragment in err.value.message


def test_a_scalesim_topology_without_a_batch_records_batch_one():
    from mappings.specs import WorkloadSpec

    assert WorkloadSpec(scalesim_topology="t.csv").batch == 1
    assert WorkloadSpec(model="lenet5").batch == 8
    # a run's own settings of what a topology does use are taken
    experiment = load_experiment(SCALESIM_RESNET18, ["runs.0.workload_set=[inference=false]"])
    assert experiment.workloads["os"].inference is False
    assert experiment.workloads["ws"].inference is True


@pytest.mark.parametrize("override, message", [
    ("arch.*.pe_cluster.pes=-1", "dense.yaml: pe_cluster.pes: Input should be greater than 0 "
     "(got -1) (set by --set arch.*.pe_cluster.pes=-1, for run dense)"),
    ("arch.hppu.noc.shap=3", "hppu_like.yaml: noc.shap: unknown key; expected one of: edges, "
     "hop_latency_cycles, link_bandwidth_bytes_per_cycle, routing, shape, topology (set by "
     "--set arch.hppu.noc.shap=3, for run hppu)"),
    ("runs.1.arch=/tmp", "quickstart.yaml: runs.1.arch: '/tmp' is a directory; expected an "
     "architecture YAML file"),
])
def test_an_arch_override_error_names_the_override(override, message):
    """The arch file alone holds no such value: the error says which --set gave it (an
    `arch.*` one named only the first run's file)."""
    with pytest.raises(ConfigError) as err:
        load_experiment(QUICKSTART, [override])
    assert str(err.value).endswith(message)


@pytest.mark.parametrize("overrides, message", [
    (["arch.dense.noc.shape.1=0"],
     "dense.yaml: noc: mesh shape [cols, rows] must be >= 1, got [4, 0] (with --set "
     "arch.dense.noc.shape.1=0, for run dense)"),
    (["arch.*.noc.topology=ring", "arch.hppu.pe_cluster.pes=8"],
     "dense.yaml: noc: topology 'ring' needs shape: [n], got [4, 4] (with --set "
     "arch.*.noc.topology=ring, for run dense)"),
])
def test_a_section_error_names_the_override_within_the_section(overrides, message):
    """A check of a section as a whole (the NoC's shape against its topology) names the
    section, not the key an override set in it: the error named `noc` and no --set."""
    code, output = _cli("check", str(QUICKSTART), *(f"--set={o}" for o in overrides))
    assert code == 2, output
    assert output.endswith(message)


def _cli(*args: str) -> tuple[int, str]:
    """Exit code and output, wrapping undone, of `desim ARGS`."""
    from typer.testing import CliRunner

    from desim.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def test_a_picture_or_report_onto_a_folder_or_below_a_file_is_bad_input(tmp_path,
                                                                         lenet_results):
    """`desim topology -o`, `desim report --out` and `desim bench --json` onto a folder (the
    atomic rename failed with IsADirectoryError), or below a file (FileExistsError), were
    tracebacks."""
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "r.html").mkdir()
    (tmp_path / "file").write_text("")
    topology = ("topology", str(DENSE), "-o")
    for args, message in (
            ((*topology, str(tmp_path / "folder.png")), "folder.png: is a folder; expected a "
                                                        "file to write"),
            ((*topology, str(tmp_path / "file" / "t.png")), "file: is a file, not a folder"),
            (("report", str(lenet_results), "--out", str(tmp_path / "r.md")),
             "r.html: is a folder; expected a file to write"),
            # before the minutes of timing, whose write failed after them
            (("bench", "--json", str(tmp_path / "folder.png")),
             "folder.png: is a folder; expected a file to write")):
        code, output = _cli(*args)
        assert code == 2, output
        assert message in output and "Traceback" not in output


@pytest.mark.parametrize("args, option", [
    (("run", str(QUICKSTART), "--out", ""), "'--out' / '-o'"),
    (("run", str(QUICKSTART), "--cache", " "), "'--cache'"),
    (("run", ""), "'config'"),
    (("check", ""), "'config'"),
    (("topology", str(DENSE), "-o", ""), "'--out' / '-o'"),
    (("topology", "", "-o", "t.png"), "'arch'"),
    (("report", "a", "--out", ""), "'--out' / '-o'"),
    (("report", ""), "'dirs'"),
    (("compare", "a", ""), "'after'"),
    (("sweep", str(QUICKSTART), "--out", ""), "'--out' / '-o'"),
    (("bench", "--json", ""), "'--json'"),
])
def test_an_empty_path_is_refused_naming_its_option(tmp_path, monkeypatch, args, option):
    """Path("") is the current folder: `desim run E.yaml --out ''` (or `--out "$UNSET"`)
    wrote its results where it was typed, unasked."""
    monkeypatch.chdir(tmp_path)
    code, output = _cli(*args)
    assert code == 2, output
    unboxed = " ".join(output.replace("│", " ").split())  # click's error box, folded
    assert f"Invalid value for {option}: an empty path; expected a file or folder name" in unboxed
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def lenet_results(tmp_path_factory) -> Path:
    """A results folder of a LeNet-300 study of two runs (seconds)."""
    from small_experiments import lenet300_experiment

    import desim

    root = tmp_path_factory.mktemp("lenet")
    exp = lenet300_experiment(root / "exp.yaml", {"dense": {"method": "dense"},
                                                  "mag": {"method": "magnitude",
                                                          "sparsity": 0.5}})
    return desim.run(exp).write(root / "results")


def _cell(column: str, value: str):
    """A layers.csv edit: the first row's `column` set to `value`."""
    def edit(text: str) -> str:
        lines = text.splitlines(keepends=True)
        at = lines[0].rstrip("\n").split(",").index(column)
        row = lines[1].rstrip("\n").split(",")
        row[at] = value
        return "".join([lines[0], ",".join(row) + "\n", *lines[2:]])
    return edit


@pytest.mark.parametrize("file, cut, message", [
    # a span the timelines draw: a word failed drawing with a traceback, 1e30 was drawn
    ("layers.csv", _cell("start_cycle", "abc"), "layers.csv: a row of run 'dense' has no "
                                                "start_cycle"),
    ("layers.csv", _cell("end_cycle", ""), "layers.csv: a row of run 'dense' has no end_cycle"),
    ("layers.csv", _cell("end_cycle", "1e30"), "layers.csv: a row of run 'dense' spans cycles "
                                               "outside 0 to "),
    # a copy stopped midway: a line and a half of layers.csv, or whole rows of energy.csv
    ("layers.csv", lambda text: text[:300],
     "layers.csv: the rows of run 'dense' add up to "),
    ("energy.csv", lambda text: "".join(text.splitlines(keepends=True)[:20]),
     "energy.csv: the rows of run 'dense' add up to "),
    ("energy.csv", lambda text: text[:text.rindex(",", 0, 300) + 1],
     "energy.csv: a row of run 'dense' has no energy_j"),
    ("layers.csv", lambda text: text.replace("\nmag,", "\nother,"),
     "layers.csv has rows of run(s) 'other' that summary.json does not have"),
])
def test_a_results_table_cut_short_is_bad_input(lenet_results, tmp_path, file, cut, message):
    """`desim report` drew a folder whose layers.csv or energy.csv was cut short as if it
    were whole: tables and timelines of part of a run, exit 0."""
    import shutil

    folder = tmp_path / "results"
    shutil.copytree(lenet_results, folder)
    (folder / file).write_text(cut((folder / file).read_text()))
    code, output = _cli("report", str(folder), "--out", str(tmp_path / "r.md"))
    assert code == 2, output
    assert message in output and "the file is cut short or from another folder" in output
    assert not (tmp_path / "r.md").exists()


@pytest.mark.parametrize("file, edit, message", [
    ("summary.json", lambda d: d["runs"]["dense"].update(phases=[]),
     "summary.json: runs.dense.phases: Input should be a valid dictionary"),
    ("config.json", lambda d: d["experiment"].update(description=5),
     "config.json: experiment.description: Input should be a valid string"),
    # a ratio that is not the runs' (drawn as given: a speedup of 0 beside a 2.7x cycle ratio)
    ("summary.json", lambda d: d["comparison"]["mag"].update(speedup=0),
     "summary.json: comparison.mag.speedup: 0 is not the baseline's over the run's"),
    # no ratio to check a time of no run against: drawn as "-33x slower"
    ("summary.json", lambda d: d["runs"]["mag"].update(seconds=-1.0),
     "summary.json: runs.mag.seconds: Input should be greater than or equal to 0"),
])
def test_a_damaged_key_the_report_reads_is_bad_input(lenet_results, tmp_path, file, edit,
                                                     message):
    """A summary's phases as a list, a description as a number: `desim report` failed with
    a traceback where `desim compare` read the folder."""
    import json
    import shutil

    folder = tmp_path / "results"
    shutil.copytree(lenet_results, folder)
    data = json.loads((folder / file).read_text())
    edit(data)
    (folder / file).write_text(json.dumps(data))
    code, output = _cli("report", str(folder), "--out", str(tmp_path / "r.md"))
    assert code == 2, output
    assert message in output and "Traceback" not in output


def test_a_summary_without_phases_is_reported(lenet_results, tmp_path):
    import json
    import shutil

    folder = tmp_path / "results"
    shutil.copytree(lenet_results, folder)
    data = json.loads((folder / "summary.json").read_text())
    del data["runs"]["dense"]["phases"]
    (folder / "summary.json").write_text(json.dumps(data))
    code, output = _cli("report", str(folder), "--out", str(tmp_path / "r.md"))
    assert code == 0, output


@pytest.mark.parametrize("sweep, message", [
    ("{axes: {workload.seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], runs.1.pruning.sparsity: "
     f"[{', '.join(str(i / 1000) for i in range(1000))}], workload.batch: "
     f"[{', '.join(map(str, range(1, 101)))}]}}}}",
     "sweep.axes: a grid of 1,000,000 points (every combination of the axes' values); "
     "expected at most 100,000"),
    ("{mode: random, budget: 1000000000000, axes: {workload.batch: {low: 1, high: 9}}}",
     "sweep.budget: Input should be less than or equal to 100000"),
])
def test_a_sweep_too_large_to_plan_is_bad_input(sweep, message):
    """A grid of 10^9 points was enumerated for hours (`desim check` and `desim sweep` hung
    before computing any point), and a random budget had no bound either."""
    with pytest.raises(ConfigError) as err:
        load_experiment(QUICKSTART, [f"sweep={sweep}"])
    assert message in str(err.value)


def test_a_random_sweep_stops_drawing_once_its_space_is_exhausted():
    """A budget larger than a small discrete space took 100 draws a point asked for (minutes
    for 10^5) to find the few there are; the points drawn are the same."""
    import time

    from desim.sweep_spec import SweepSpec, plan_points

    axes = {"workload.batch": [1, 2], "workload.seed": {"low": 0, "high": 2}}
    started = time.perf_counter()
    many = plan_points(SweepSpec(mode="random", budget=100_000, axes=axes, seed=3))
    assert time.perf_counter() - started < 5
    assert len(many) == 6
    few = plan_points(SweepSpec(mode="random", budget=4, axes=axes, seed=3))
    assert [p.values for p in many[:4]] == [p.values for p in few]


@pytest.mark.parametrize("overrides, message", [
    (["workload.input_shape=[3, 1000000000000000000000000000000, 32]"],
     "quickstart.yaml: workload.input_shape.1: Input should be less than 9223372036854775808"),
    (["workload.num_classes=1000000000000000000000000000000"],
     "quickstart.yaml: workload.num_classes: Input should be less than 9223372036854775808"),
    (["workload.model=transformer_block", "workload.model_args={dim: 100000000000000000000}",
      "workload.input_shape=null"],
     "quickstart.yaml: workload.model_args.dim: model 'transformer_block', argument 'dim': "
     "expected a whole number of 64 bits (torch's sizes), less than 2^63, got "
     "100000000000000000000"),
    # the data's images are shaped to 1, 2 or 3 axes: 4 failed in `desim run` only
    ([f"workload.model={ROOT}/configs/models/tiny_cnn.py:tiny_cnn",
      "workload.input_shape=[1, 3, 8, 8]"],
     "quickstart.yaml: workload.input_shape: digits images come as a vector [n], a sequence "
     "[rows, width] or an image [channels, height, width], not in 4 axes [1, 3, 8, 8]; use "
     "data: random"),
])
def test_a_size_torch_cannot_take_is_bad_input(overrides, message, tmp_path):
    """A size of 2^63 or more failed inside torch ("failed to unpack the object", a
    TypeError's traceback in `desim check`), and the data could not be shaped as asked."""
    experiment = tmp_path / "quickstart.yaml"
    experiment.write_text(QUICKSTART.read_text().replace("../", f"{ROOT}/configs/"))
    code, output = _cli("check", str(experiment), *(f"--set={o}" for o in overrides))
    assert code == 2, output
    assert message in output and "Traceback" not in output


def test_a_folder_named_as_a_result_file_is_refused_before_simulating(tmp_path):
    """A folder `summary.json` in the results folder failed the atomic rename onto it with
    a traceback, after the whole simulation."""
    from small_experiments import lenet300_experiment

    import desim

    experiment = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}})
    (tmp_path / "out" / "summary.json").mkdir(parents=True)
    code, output = _cli("run", str(experiment), "--out", str(tmp_path / "out"))
    assert code == 2, output
    assert output.endswith(f"{tmp_path / 'out'}: summary.json: a folder where desim run writes "
                           "that file; expected a results folder without it")
    with pytest.raises(ConfigError, match="summary.json: a folder where desim run"):
        desim.run(experiment, out=tmp_path / "out")


def test_a_training_too_long_to_finish_is_bad_input():
    """`training.iterations: 10^30` was taken, and the capture's training would have run for
    ever: a training is at most MAX_TRAINING_ITERATIONS SGD steps (a million: hours)."""
    from mappings.specs import MAX_TRAINING_ITERATIONS

    code, output = _cli("check", str(QUICKSTART),
                        f"--set=workload.training={{iterations: {10**30}}}")
    assert code == 2, output
    assert ("quickstart.yaml: workload.training.iterations: expected at most 1,000,000 (each "
            "is a real SGD step before the capture") in output
    assert output.endswith(f"got {10**30}")
    with pytest.raises(ConfigError, match="runs.1.workload_set.training.iterations: expected "
                                          "at most 1,000,000"):
        load_experiment(QUICKSTART, ["runs.1.workload_set=[training.iterations=1000001]"])
    load_experiment(QUICKSTART, [f"workload.training={{iterations: {MAX_TRAINING_ITERATIONS}}}"])


def test_a_run_workload_error_names_its_workload_set():
    """`runs.0.workload_set=[model=lenet5]` on a workload of 3-channel images named only
    `workload.input_shape`, which the user had not touched; the experiment's own workload
    error still names the workload (resnet18 cannot take [3, 32] either)."""
    lenet = "--set=runs.0.workload_set=['model=lenet5', 'model_args={}']"
    code, output = _cli("check", str(QUICKSTART), lenet)
    assert code == 2, output
    assert ("quickstart.yaml: runs.0.workload_set: workload.input_shape: model 'lenet5' cannot "
            "take inputs of shape [3, 32, 32]") in output
    assert output.endswith("(the workload of run 'dense': the experiment's with its "
                           "workload_set [model=lenet5, model_args={}])")
    code, output = _cli("check", str(QUICKSTART), lenet, "--set=workload.input_shape=[3, 32]")
    assert code == 2, output
    assert "quickstart.yaml: workload.input_shape: model 'resnet18' cannot take" in output


@pytest.mark.parametrize("claim, message", [
    ("runs.hppu.workload.zzz", "quickstart.yaml: claims.0.metric: 'runs.hppu.workload.zzz': "
     "run 'hppu' will have no workload statistic 'zzz'; it will have: activation_sparsity, "
     "gradient_sparsity, weight_sparsity, vector_layers, pruned_layers_weight_sparsity"),
    ("runs.dense.workload.accuracy", "claims.0.metric: 'runs.dense.workload.accuracy': run "
     "'dense' will have no workload statistic 'accuracy' (it needs a training "
     "(workload.training)); it will have: activation_sparsity, gradient_sparsity, "
     "weight_sparsity, vector_layers"),
    ("runs.hppu.workload", "claims.0.metric: 'runs.hppu.workload': expected "
     "runs.hppu.workload.<statistic>, one of: activation_sparsity"),
])
def test_a_claim_on_a_workload_statistic_a_run_cannot_have_is_bad_input(claim, message):
    """`desim check` passed `runs.hppu.workload.zzz`: only the report, after the
    simulation, found it missing."""
    code, output = _cli("check", str(QUICKSTART),
                        f"--set=claims=[{{metric: {claim}, paper: 1, tolerance: 1}}]")
    assert code == 2, output
    assert message in output


def test_the_workload_statistics_a_claim_may_name_are_those_a_run_has(tmp_path):
    """`workload_stat_names` against summary.json: a run that prunes, trains and speculates
    has every statistic, a dense one without training the four of every run."""
    from small_experiments import lenet300_experiment

    import desim
    from desim.experiment import workload_stat_names

    path = lenet300_experiment(tmp_path / "exp.yaml", {"dense": {"method": "dense"}})
    data = yaml.safe_load(path.read_text())
    data["workload"]["training"] = {"iterations": 2}
    data["runs"].append({"name": "spec", "arch": str(ROOT / "configs/arch/trainer.yaml"),
                         "workload_set": ["speculative_relu=true"],
                         "pruning": {"method": "dynamic", "sparsity": 0.5}})
    path.write_text(yaml.safe_dump(data))
    experiment = load_experiment(path)
    summary = desim.run(path).summary
    for run in experiment.spec.runs:
        names = workload_stat_names(run, experiment.workloads[run.name],
                                    experiment.archs[run.name])
        assert sorted(summary["runs"][run.name]["workload"]) == sorted(names)
    assert len(names) == 15


@pytest.mark.parametrize("metric, message", [
    ("energy_j.zzz", "--plot: no 'energy_j.zzz' in this sweep: no run of its points has it; "
     "they have: energy_j.dram, energy_j.global_buffer, energy_j.local_buffers, energy_j.macs, "
     "energy_j.noc, energy_j.selector, energy_j.vector_unit"),
    ("time_by_busiest_part.mac_units", "--plot: no 'time_by_busiest_part.mac_units' in this "
     "sweep"),
    ("utilization.", "--plot: no 'utilization.' in this sweep"),
])
def test_a_plot_of_a_part_no_run_has_is_refused_before_the_sweep(metric, message, tmp_path):
    """`--plot energy_j.zzz:AXIS` computed the whole sweep (47 s for sweep_demo.yaml)
    before refusing the plot: a run's components and parts are known once its processor is
    built."""
    out = tmp_path / "sweep"
    code, output = _cli("sweep", str(ROOT / "configs" / "experiments" / "sweep_demo.yaml"),
                        "--out", str(out), "--plot", f"{metric}:arch.hppu.pe_cluster.pes")
    assert code == 2, output
    assert output.startswith(f"error: {message}")
    assert not out.exists()


def test_the_parts_a_plot_may_name_are_those_a_run_has(lenet_results):
    """`summary_names`, from the processor built, against summary.json's keys."""
    import json

    from arch.accelerator import Accelerator
    from desim.elaborate import summary_names
    from desim.module import Simulator

    summary = json.loads((lenet_results / "summary.json").read_text())
    for name, run in summary["runs"].items():
        names = summary_names(Accelerator(Simulator(), load_arch(DENSE), name=name))
        for key in ("energy_by_component_j", "utilization", "time_by_busiest_part",
                    "energy_prices_pj"):
            assert sorted(run[key]) == names[key]


@pytest.mark.parametrize("claim, message", [
    ("runs.hppu.phases", "claims.0.metric: 'runs.hppu.phases' is no number; expected "
     "runs.hppu.phases.<FF|BP|WG|WU>.<cycles|energy_j|macs|effectual_macs|processed_macs|"
     "dram_bytes>"),
    ("runs.hppu.phases.XX.cycles", "'runs.hppu.phases.XX.cycles': no 'XX' there; expected "
     "one of: FF, BP, WG"),
    ("runs.hppu.cycles.FF", "'runs.hppu.cycles.FF' is no number; expected runs.hppu.cycles"),
    ("comparison.hppu.speedup.FF", "expected comparison.hppu.speedup"),
    ("runs.hppu.energy_by_action_j.noc", "expected "
     "runs.hppu.energy_by_action_j.<component>.<action>"),
    ("runs.hppu.utilization.zzz", "claims.0.metric: 'runs.hppu.utilization.zzz': the "
     "processor of run 'hppu' has no 'zzz' in utilization; it has: dram, glb, mac_units, noc, "
     "pe_array, selector, vector_unit"),
    ("runs.dense.energy_by_component_j.selector", "the processor of run 'dense' has no "
     "'selector' in energy_by_component_j; it has: dram, global_buffer, local_buffers, macs, "
     "noc, vector_unit"),
    ("runs.dense.time_by_busiest_part.mac_units", "has no 'mac_units' in time_by_busiest_part"),
    ("runs.dense.energy_prices_pj.selector_pj_per_entry", "the processor of run 'dense' has "
     "no 'selector_pj_per_entry' in energy_prices_pj; it has: "),
    ("''", "claims.0: metric and over name a dotted path of summary.json"),
])
def test_a_claim_on_no_number_or_a_part_a_run_lacks_is_bad_input(claim, message):
    """`runs.X.phases` (a section, no number) and `runs.X.utilization.zzz` (a part its
    processor lacks) passed `desim check`: only the report, after the simulation, found no
    number there."""
    code, output = _cli("check", str(QUICKSTART),
                        f"--set=claims=[{{metric: {claim}, paper: 1, tolerance: 1}}]")
    assert code == 2, output
    assert message in output


def test_the_sections_a_claim_may_name_are_those_a_run_has(lenet_results):
    """CLAIM_SECTIONS' fixed keys against summary.json's: each phase's figures (WU's only
    where the workload asks for a weight update: this one does not), each unit's."""
    import json

    from desim.experiment import CLAIM_SECTIONS

    run = json.loads((lenet_results / "summary.json").read_text())["runs"]["dense"]
    phases, figures = CLAIM_SECTIONS["phases"]
    assert sorted(run["phases"]) == sorted(p for p in phases if p != "WU")
    assert all(sorted(run["phases"][p]) == sorted(figures) for p in run["phases"])
    units, unit_figures = CLAIM_SECTIONS["units"]
    assert set(run["units"]) <= set(units)
    assert all(sorted(run["units"][u]) == sorted(unit_figures) for u in run["units"])
    assert set(CLAIM_SECTIONS) < {key for key, value in run.items() if isinstance(value, dict)}


def test_mapping_out_of_memory_names_the_layer_phase_and_the_batch(tmp_path, monkeypatch):
    """A layer-phase whose count maps do not fit in memory (VGG-16's 25088 x 4096 linear
    layer's WG at batch 2 took over 22 GB) is bad input of the workload's batch, naming the
    layer-phase and the run, not a traceback from torch's allocator."""
    import desim
    from mappings import mapper

    def short_of_memory(layer, layer_id, phase, *args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 822083584 bytes.")

    monkeypatch.setattr(mapper, "tile_phase", short_of_memory)
    experiment = lenet300_experiment(tmp_path / "lenet300.yaml", {"dense": {"method": "dense"}})
    with pytest.raises(ConfigError) as err:
        desim.run(experiment)
    assert err.value.key == "workload.batch" and err.value.file == str(experiment)
    assert str(err.value).endswith(
        "mapping layer 0 FF (600 outputs, each counted in several maps) does not fit in "
        "this machine's memory: lenet300 at batch 2; a smaller batch or input shape maps in "
        "less (run 'dense')")


@pytest.mark.parametrize("design, kind, edit", [
    ("reram_bitslice.yaml", "reram_crossbar", lambda text: text.replace("kind:", "knd:")),
    ("snn_split_time.yaml", "snn_systolic",
     lambda text: "\n".join(line for line in text.splitlines() if not line.startswith("kind:"))),
])
def test_a_design_whose_kind_is_missing_or_misspelt_says_so(design, kind, edit, tmp_path):
    """Read as a training processor, a ReRAM or SNN file failed on its first key a training
    processor lacks ("energy.adc_8bit_pj: unknown key"), sending the user after a typo in a
    key that was right."""
    from desim.experiment import load_design

    path = tmp_path / design
    path.write_text(edit((ROOT / "configs" / "arch" / design).read_text()))
    with pytest.raises(ConfigError, match=rf"unknown key.*\(the file's keys are a {kind} "
                                          rf"design's: is its `kind: {kind}` missing or "
                                          r"misspelt\?\)$"):
        load_design(path)
    with pytest.raises(ConfigError) as plain:  # a training processor's typo: no such hint
        load_design(ROOT / "configs" / "arch" / "dense.yaml", overrides=["pe_clustr.pes=4"])
    assert "kind" not in str(plain.value)
