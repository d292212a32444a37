"""A claim of an experiment file checked against a results folder's summary.json: the
paper's figure, desim's value, the tolerance the file states, and whether the value lies
where the file expects it (within, or outside as a known gap).

Claims may name, besides any number in summary.json, these derived metrics:
- `runs.<run>.on_chip_energy_j`: the run's energy without the DRAM's share (a synthesized
  processor's power figures, and so its TFLOPS/W, cover the chip only);
- `comparison.<run>.on_chip_energy_ratio`: baseline on-chip energy / the run's;
- `runs.<run>.tflops_per_w`: 2 x nominal MACs / energy / 1e12 (dense-equivalent FLOPs per
  joule, the convention of the papers' TFLOPS/W figures);
- `runs.<run>.on_chip_tflops_per_w`: the same over the on-chip energy (a chip's peak figure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from desim.experiment import Claim
from desim.metrics import DERIVED_RUN, on_chip_energy_ratio
from desim.summary_text import fmt

RANGE_DIGITS = 5  # a paper's figure has up to five (173.28): its range as many


def resolve(summary: dict[str, Any], path: str) -> float:
    """The number at dotted `path` of a summary.json, or a derived metric (module doc).

    Raises KeyError naming the path when there is no such number.
    """
    node: Any = summary
    try:
        for part in path.split("."):
            node = node[part]
        return float(node)
    except (KeyError, TypeError, ValueError):
        pass
    parts = path.split(".")
    if len(parts) == 3 and parts[1] in summary.get("runs", {}):
        group, run, name = parts
        if group == "runs" and name in DERIVED_RUN:
            return DERIVED_RUN[name](summary["runs"][run])
        if group == "comparison" and name == "on_chip_energy_ratio":
            base = summary["runs"][summary["baseline"]]
            return on_chip_energy_ratio(base, summary["runs"][run])
    raise KeyError(f"no metric {path!r} in summary.json (nor a derived one)")


@dataclass
class ClaimCheck:
    """One claim against one results folder."""

    claim: Claim
    value: float | None       # None: the metric is missing from the results
    error: str = ""
    parts: list[float] = field(default_factory=list)  # the values a list claim averages
    # a ratio claim's metric and over (accuracies 0.908 and 0.918 of a ratio 0.989), one
    # pair for each ratio a list claim averages
    operands: list[tuple[float, float]] = field(default_factory=list)

    @property
    def low(self) -> float:
        return -math.inf if self.claim.compare == "at_most" else (
            self.claim.paper - self.claim.tolerance)

    @property
    def high(self) -> float:
        return math.inf if self.claim.compare == "at_least" else (
            self.claim.paper + self.claim.tolerance)

    @property
    def within(self) -> bool | None:
        if self.value is None:
            return None
        return self.low <= self.value <= self.high

    @property
    def as_expected(self) -> bool:
        """True when the value lies where the experiment file says it should."""
        return self.within is not None and self.within == (self.claim.expect == "within")

    @property
    def verdict(self) -> str:
        if self.within is None:
            return "MISSING"
        if self.within:
            return "within" if self.as_expected else "within (file expects a gap: update it)"
        return "outside (known gap)" if self.as_expected else "OUTSIDE (unexpected)"

    @property
    def paper_text(self) -> str:
        """The paper's figure as the experiment file gives it, never rounded (126.04, not
        126); a whole number without its ".0"."""
        text = repr(float(self.claim.paper))
        return text.removesuffix(".0")

    @property
    def range_text(self) -> str:
        """The accepted range, to `RANGE_DIGITS` (173.28 +- 34.66: 138.62 to 207.94)."""
        c = self.claim
        low, high = fmt(self.low, RANGE_DIGITS), fmt(self.high, RANGE_DIGITS)
        if c.compare == "at_least":
            return f">= {low}"
        if c.compare == "at_most":
            return f"<= {high}"
        return f"{low} to {high}"

    @property
    def value_text(self) -> str:
        """The value, with a ratio's two figures or the values it averages in brackets (each
        ratio's figures too: "1.007 (0.9 / 0.8 = 1.125, 0.8 / 0.9 = 0.8889)"); with as many
        more digits as it takes not to read as the bound it lies beyond (1.2197 against
        1.22, not 1.22)."""
        digits = 4
        if self.value is not None and self.within is False:
            while digits < 8 and fmt(self.value, digits) in (fmt(self.low, RANGE_DIGITS),
                                                              fmt(self.high, RANGE_DIGITS)):
                digits += 1
        value = fmt(self.value, digits)
        shown = [f"{fmt(metric)} / {fmt(over)}" for metric, over in self.operands]
        if self.parts and shown:  # a mean of ratios: each with its figures
            shown = [f"{ratio} = {fmt(p)}" for ratio, p in zip(shown, self.parts, strict=True)]
        elif self.parts:  # a mean of metrics
            shown = [fmt(p) for p in self.parts]
        return f"{value} ({', '.join(shown)})" if shown else value

    @property
    def metric_text(self) -> str:
        text = [m + (f" / {o}" if o else "") for m, o in self.claim.ratios()]
        return text[0] if isinstance(self.claim.metric, str) else f"mean of ({', '.join(text)})"

    @property
    def title(self) -> str:
        """The claim in words when its file gives a label, else its metric path."""
        return self.claim.label or self.metric_text


def check_claim(summary: dict[str, Any], claim: Claim) -> ClaimCheck:
    """The claim's value from a summary (metric, or metric / over, or the mean of a list of
    those) and where it lies; each ratio keeps its two figures."""
    try:
        pairs = [(resolve(summary, metric), resolve(summary, over) if over else 1.0)
                 for metric, over in claim.ratios()]
        values = [a / b for a, b in pairs]
    except (KeyError, ZeroDivisionError) as err:
        return ClaimCheck(claim, None, str(err).strip("'\""))
    operands = pairs if claim.over else []
    if isinstance(claim.metric, list):
        return ClaimCheck(claim, sum(values) / len(values), parts=values, operands=operands)
    return ClaimCheck(claim, values[0], operands=operands)
