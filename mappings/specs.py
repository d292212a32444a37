"""What an experiment's workload section says: the model and its data, the training before
the capture, the pruning. Pydantic models, validated when a file is read.

They live apart from the code that carries them out (mappings/workload.py, training.py,
pruning/) so that reading and checking a configuration does not import torch: the CLI's
help, `desim topology` and a typo's error message come in a second, not after torch loads.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, PositiveInt, model_validator

from desim.configio import Strict

Dataset = Literal["digits", "mnist", "random"]
# The classes of the bundled data sets (mappings/datasets.py). A model of fewer would need
# labels folded together: one class made every label 0 and a trained accuracy of 1.0.
DATASET_CLASSES = {"digits": 10, "mnist": 10}
# The images each holds out to measure accuracy on (its last fifth, mappings/datasets.py):
# a training's eval_samples beyond them was capped without a word.
DATASET_HELD_OUT = {"digits": 359, "mnist": 1000}

# A seed torch's and numpy's generators take (a signed 64-bit integer's range, less the
# negatives numpy refuses): a larger one was a traceback from manual_seed.
Seed = Annotated[int, Field(ge=0, lt=2**63)]
# A size torch takes (a batch, an axis of a shape, a class count): its sizes are 64-bit; a
# larger one was a TypeError's traceback from torch.
Size = Annotated[int, Field(gt=0, lt=2**63)]


Method = Literal[
    "dense",
    "magnitude",
    "dynamic",
    "n_m",
    "filter",
    "channel",
    "line",
    "hybrid",
    "block",
    "pe_wise",
    "permuted_diagonal",
    "block_circulant",
    "ternarize",
    "dropback",
    "set",
    "rigl",
]

_REQUIRED: dict[str, tuple[str, ...]] = {
    "n_m": ("n", "m"),
    "block": ("block",),
    "pe_wise": ("pe_rows", "pe_cols"),
    "permuted_diagonal": ("p",),
    "block_circulant": ("b",),
}

# The parameters each method reads (mappings/pruning/spec.py, mappings/training.py): any
# other one given is an error, not dropped, so that `{method: n_m, ..., sparsity: 0.9}` does
# not run at n/m's 0.5 believing it ran at 0.9. A method listing `sparsity` (but dropback,
# which may take k instead) needs it given: a default of 0 would prune nothing.
_TAKES: dict[str, tuple[str, ...]] = {
    "dense": (),
    "magnitude": ("sparsity",),
    "dynamic": ("sparsity",),
    "n_m": ("n", "m"),
    "filter": ("sparsity",),
    "channel": ("sparsity",),
    "line": ("sparsity",),
    "hybrid": ("sparsity", "channel_share"),
    "block": ("sparsity", "block"),
    "pe_wise": ("sparsity", "pe_rows", "pe_cols"),
    "permuted_diagonal": ("p", "seed"),
    "block_circulant": ("b",),
    "ternarize": ("threshold_ratio",),
    "dropback": ("sparsity", "k", "seed", "init_decay"),
    "set": ("sparsity", "seed", "regrow_fraction", "update_every"),
    "rigl": ("sparsity", "seed", "regrow_fraction", "update_every"),  # seed: a layer
}                                                   # without a gradient regrows as SET does

# Methods whose sparsity their structure sets, said when a sparsity is given to them.
_IMPLIED_SPARSITY = {"n_m": "1 - n/m", "permuted_diagonal": "1 - 1/p"}


# Methods `ternary` does not combine with: no mask (dense), already ternary, values replaced
# (block_circulant) or masks that move during training.
TERNARY_EXCLUDED = {"dense", "ternarize", "block_circulant", "dropback", "set", "rigl", "dynamic"}


class PruningSpec(Strict):
    """Which pruning method to apply, with its parameters (only those the method uses);
    a config section like any other (`Strict`: no unknown keys, finite numbers, no
    booleans for numbers)."""

    method: Method
    sparsity: float = Field(0.0, ge=0.0, lt=1.0)
    n: int | None = Field(None, ge=0)
    m: PositiveInt | None = None
    channel_share: float = Field(0.5, ge=0.0, le=1.0)
    block: tuple[PositiveInt, PositiveInt] | None = None
    pe_rows: PositiveInt | None = None
    pe_cols: PositiveInt | None = None
    p: PositiveInt | None = None
    b: PositiveInt | None = None
    k: PositiveInt | None = None  # DropBack: weights tracked (0 would train none)
    # DropBack: the factor the untracked weights' initial values decay by, a training step
    # (Procrustes' adaptation: 0.9 in its authors' runs; 1, DropBack proper). Below 1 the
    # untracked weights tend to zero, and the captured iteration computes them as zeros, as
    # Procrustes' hardware skips them (mappings/training.py); without training, they are
    # zeros (the limit), and with 1 they keep their initial values (mappings/pruning/spec.py).
    init_decay: float = Field(1.0, gt=0.0, le=1.0)
    threshold_ratio: float = Field(0.7, ge=0.0)
    seed: Seed = 0
    regrow_fraction: float = Field(0.3, ge=0.0, le=1.0)  # SET / RigL: share dropped and regrown
    update_every: PositiveInt = 10                       # SET / RigL: iterations between updates
    skip_first_conv: bool = True
    skip_last_linear: bool = True
    # Ternarize the weights the method keeps (TWN thresholding over the kept weights, with
    # `threshold_ratio`): structured pruning + ternarization as in Yang, He, Fan, "Harmonious
    # Coexistence of Structured Weight Pruning and Ternarization", AAAI 2020 (pe_wise + this).
    ternary: bool = False

    def takes(self) -> tuple[str, ...]:
        """The parameters this spec's method reads (besides `method`)."""
        if self.method == "dense":
            return ()
        ternary = () if self.method in TERNARY_EXCLUDED else ("ternary",)
        ratio = ("threshold_ratio",) if self.ternary else ()
        return (*_TAKES[self.method], *ternary, *ratio, "skip_first_conv", "skip_last_linear")

    @model_validator(mode="after")
    def _method_params(self) -> PruningSpec:
        missing = [f for f in _REQUIRED.get(self.method, ()) if getattr(self, f) is None]
        if missing:
            raise ValueError(f"method {self.method!r} needs {', '.join(missing)}")
        if self.ternary and self.method in TERNARY_EXCLUDED:
            raise ValueError(f"ternary applies to a static mask; not to {self.method!r}")
        takes = self.takes()
        for name in type(self).model_fields:  # in the class's order: the first one named
            if name in self.model_fields_set and name != "method" and name not in takes:
                implied = _IMPLIED_SPARSITY.get(self.method) if name == "sparsity" else None
                raise ValueError(
                    f"{name}: method {self.method!r} does not use it (it takes "
                    f"{', '.join(takes) or 'no parameters'}"
                    f"{f'; its sparsity is {implied}' if implied else ''}); drop it "
                    f"(--set: give the whole mapping, pruning={{method: {self.method}, ...}})")
        if ("sparsity" in _TAKES[self.method] and self.method != "dropback"
                and "sparsity" not in self.model_fields_set):
            raise ValueError(f"sparsity: method {self.method!r} needs a target sparsity "
                             "(the fraction of its units pruned, 0 <= sparsity < 1)")
        if self.method == "dropback" and (self.k is None) == (self.sparsity == 0):
            raise ValueError("method 'dropback' needs one of k (weights tracked) and a "
                             "sparsity > 0, not both")
        if self.method == "n_m" and self.n > self.m:  # type: ignore[operator]
            raise ValueError(f"n_m needs n <= m, got n={self.n}, m={self.m}")
        return self


# The most SGD iterations a training may take: every one is a real forward and backward pass
# on this CPU before the capture, about 5 ms for the smallest shipped model (LeNet-300-100 at
# batch 32: dropback_lenet.yaml's two 600-iteration trainings take 6.8 s) and 0.3 s for
# ResNet-18 (hppu_pruning_ratio.yaml's). A million is an hour and a half of the smallest, days
# of ResNet-18; more (a typo's 10^30) would run for ever before its error or result. The
# shipped studies train 600 at most.
MAX_TRAINING_ITERATIONS = 1_000_000


RAMP_FRACTION = 0.5  # the gradual schedule reaches its sparsity halfway, by default


class TrainingSpec(Strict):
    iterations: PositiveInt
    learning_rate: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    capture_iteration: int | None = None  # default: the last one
    gradual: bool = False                 # cubic schedule (magnitude pruning)
    ramp_fraction: float = Field(RAMP_FRACTION, gt=0, le=1)  # of the iterations, gradual
    eval_samples: PositiveInt = 200

    @model_validator(mode="after")
    def _capture_within_the_run(self) -> TrainingSpec:
        if self.iterations > MAX_TRAINING_ITERATIONS:
            raise ValueError(f"iterations: expected at most {MAX_TRAINING_ITERATIONS:,} (each is "
                             "a real SGD step before the capture: a million take hours for "
                             f"the smallest model, days for ResNet-18), got {self.iterations}")
        at = self.capture_iteration
        if at is not None and not 0 <= at < self.iterations:
            raise ValueError(f"capture_iteration: {at} is not one of the iterations "
                             f"0..{self.iterations - 1}")
        if not self.gradual and self.ramp_fraction != RAMP_FRACTION:
            raise ValueError("ramp_fraction: it shapes the gradual schedule, which is off "
                             "(gradual: false); set gradual: true, or leave it out")
        return self


# What a model's workload takes and a SCALE-Sim topology (shapes from its CSV, no values) does
# not: given with one, they are an error, not a silent no-op.
TOPOLOGY_UNUSED = frozenset({"model_args", "input_shape", "num_classes", "data", "seed"})


class WorkloadSpec(Strict):
    model: str | None = None  # a model of mappings.models, or else:
    # a SCALE-Sim topology CSV (mappings/scalesim.py): dense layers, batch 1, inference;
    # a path relative to the experiment file. Exactly one of `model` and this.
    scalesim_topology: str | None = None
    model_args: dict[str, Any] = Field(default_factory=dict)
    batch: Size = 8  # large ones are out of memory
    input_shape: list[Size] | None = Field(None, min_length=1)  # default: the model's,
    # with the axes its model_args set (a transformer's seq_len and dim, the probe's
    # channels); an empty list is no shape (it was taken silently for the default)
    num_classes: Size = 10
    data: Dataset = "digits"
    seed: Seed = 0
    training: TrainingSpec | None = None  # train first, then capture a chosen iteration
    # Simulate the forward pass (FF) only: an inference, as the inference engines of
    # PermDNN, CirCNN, EIE and ADMM-NN run. The capture still takes a full training step.
    inference: bool = False
    # Run the captured pass (and the training before it) as hardware with ReLU speculation
    # does: FF outputs the exponent-only prediction zeroes are zero, false zeros included
    # (mappings/speculation.py). Off: the exact pass; a speculating processor's work is
    # still counted from the prediction, its errors reported only.
    speculative_relu: bool = False
    # After each weighted layer's WG, the optimizer's step, simulated as the phase WU on the
    # vector unit (`mappings.update`): reads W, dW and the optimizer's state
    # (momentum: one value a weight; adam: two), writes W and the state. `none`: the
    # iteration is FF, BP and WG, as the papers' claims count it.
    weight_update: Literal["none", "sgd", "momentum", "adam"] = "none"

    @model_validator(mode="before")
    @classmethod
    def _topology_batch(cls, data: Any) -> Any:
        """A SCALE-Sim topology's batch is 1 unless given (its CSV has no batch): the
        default of 8 was recorded in config.json for layers read at batch 1."""
        if isinstance(data, dict) and data.get("scalesim_topology") is not None:
            return {"batch": 1, **data}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> WorkloadSpec:
        if (self.model is None) == (self.scalesim_topology is None):
            raise ValueError("give exactly one of `model` and `scalesim_topology`")
        if self.scalesim_topology is not None:
            # read as dense layers at batch 1 (mappings/scalesim.py), as SCALE-Sim runs them:
            # a batch or a training would be recorded but not simulated
            if self.batch != 1:
                raise ValueError(f"batch: a SCALE-Sim topology is dense layers at batch 1 "
                                 f"(its CSV has no batch), got {self.batch}")
            if self.training is not None:
                raise ValueError("training: a SCALE-Sim topology has no model to train; "
                                 "its layers are dense, at batch 1")
            unused = sorted(self.model_fields_set & TOPOLOGY_UNUSED)
            if unused:  # they would be recorded in config.json but not used
                raise ValueError(f"{unused[0]}: a SCALE-Sim topology takes its layers' shapes "
                                 "from its CSV and no data, weights or classes; drop "
                                 f"{', '.join(unused)}")
        if self.inference and self.weight_update != "none":
            raise ValueError(f"weight_update: an inference updates no weight, got "
                             f"{self.weight_update!r}; drop it or the inference")
        if self.speculative_relu and self.model is None:
            raise ValueError("speculative_relu needs a `model`: a SCALE-Sim topology has no "
                             "values to speculate on")
        if self.training is not None and self.data == "random":
            # training reports held-out accuracy (mappings/datasets.py held_out); the capture
            # would fail after training, not before
            raise ValueError("training: training measures accuracy on held-out data, which "
                             "data: random has none of; use data: digits or mnist")
        if self.data != "random" and self.input_shape and len(self.input_shape) > 3:
            # the images are shaped in mappings/datasets.py; more axes failed there, after
            # `desim check` had passed, with a traceback
            raise ValueError(f"input_shape: {self.data} images come as a vector [n], a "
                             "sequence [rows, width] or an image [channels, height, width], "
                             f"not in {len(self.input_shape)} axes {self.input_shape}; use "
                             "data: random for such a shape")
        if self.model is not None:
            self._check_classes()
        held_out = DATASET_HELD_OUT.get(self.data)
        if self.training is not None and held_out and self.training.eval_samples > held_out:
            raise ValueError(f"training.eval_samples: {self.data} holds out {held_out} images "
                             f"to measure accuracy on, fewer than {self.training.eval_samples}; "
                             f"ask for at most {held_out}")
        if self.data != "random" and self.input_shape and len(self.input_shape) == 1:
            # a flat input is the image resized to a square, flattened (mappings/datasets.py):
            # another size would crop the digit or pad it with invented pixels
            size = self.input_shape[0]
            side = math.isqrt(size)
            if side * side != size:
                raise ValueError(f"input_shape: {self.data} images come as a flat vector of "
                                 "a square image's pixels ([784]: 28 x 28), so its size must "
                                 f"be a square number, got {size} (nearest: {side * side}, "
                                 f"{(side + 1) ** 2}); use data: random for another size")
        return self

    def _check_classes(self) -> None:
        """The model's classes are workload.num_classes, the one count the loss, the data
        and the model share: a model_args.num_classes besides it (the built-ins take one)
        must agree, and a real data set's labels need as many classes as it has. (None,
        a model without a head, is said where the loss needs one: `workload.num_classes`.)"""
        given = self.model_args.get("num_classes", self.num_classes)
        if given is not None and given != self.num_classes:
            raise ValueError(f"model_args.num_classes: {given!r} contradicts "
                             f"workload.num_classes {self.num_classes}; give the number of "
                             "classes once, as workload.num_classes (the model gets it as "
                             "its num_classes)")
        least = DATASET_CLASSES.get(self.data, 0)
        if self.num_classes < least:
            raise ValueError(f"num_classes: {self.data} has {least} classes (labels 0 to "
                             f"{least - 1}), so the model needs at least {least}, got "
                             f"{self.num_classes}; use data: random for fewer classes")
