"""Systolic-array mode of the PE cluster: SCALE-Sim v3's compute cycles, in closed form.

A systolic array of `rows` x `cols` MAC units runs a GEMM view of a layer-phase: M output
pixels (SCALE-Sim's `ofmap_px_per_filt`, times the batch), N filters and a reduction of K
(the convolution window R*S*C). SCALE-Sim (scalesim 3.0.0, `scalesim/compute/`) folds the
GEMM onto the array and builds, fold by fold, skewed demand matrices; a layer's
"Total Cycles" (COMPUTE_REPORT.csv, default CALC bandwidth mode, so no DRAM stalls) is the
index of the last ofmap demand row, `scalesim/memory/double_buffered_scratchpad_mem.py`,
`double_buffered_scratchpad.service_memory_requests`: the number of demand rows minus one.
The demand rows per fold, read from each dataflow's `create_ofmap_demand_mat` (and the fold
counts from its `set_params`):

- ``os`` (output stationary, `systolic_compute_os.py`): Sr = M on the rows, Sc = N on the
  columns, T = K streamed. Folds: ceil(M/rows) * ceil(N/cols). A fold is T - 1 rows of
  prefix (operands streaming in) plus `rows` of outputs draining, skewed over `cols`
  columns: T + rows + cols - 2 rows.
- ``ws`` (weight stationary, `systolic_compute_ws.py`): Sr = K on the rows, Sc = N on the
  columns, T = M streamed. Folds: ceil(K/rows) * ceil(N/cols). A fold is 2*rows - 1 rows of
  prefix (weights loaded and the pipeline filled) plus M outputs, skewed over `cols`:
  M + 2*rows + cols - 2 rows.
- ``is`` (input stationary, `systolic_compute_is.py`): Sr = K on the rows, Sc = M on the
  columns, T = N streamed. Folds: ceil(K/rows) * ceil(M/cols); a fold N + 2*rows + cols - 2.

So a layer takes `folds * per_fold - 1` cycles. Checked against scalesim 3.0.0 on a 4x4 array
(tests/test_systolic.py's cases) and on ResNet-18 (benchmarks/SCALESIM.md).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import PositiveInt

from desim.configio import Strict

Dataflow = Literal["os", "ws", "is"]


class SystolicConfig(Strict):
    """`pe_cluster.systolic`: the PEs as one rows x cols systolic array (SCALE-Sim's model)."""

    rows: PositiveInt
    cols: PositiveInt
    dataflow: Dataflow = "os"


def folds_and_fold_cycles(rows: int, cols: int, dataflow: str, m: int, n: int, k: int
                          ) -> tuple[int, int]:
    """(folds, cycles of one fold) of an M x N output GEMM with reduction K on the array.

    SCALE-Sim 3.0.0: `scalesim/compute/systolic_compute_{os,ws,is}.py`, `set_params` (folds)
    and `create_ofmap_demand_mat` (rows of one fold's skewed demand matrix).
    """
    if dataflow == "os":
        return math.ceil(m / rows) * math.ceil(n / cols), k + rows + cols - 2
    if dataflow == "ws":
        return math.ceil(k / rows) * math.ceil(n / cols), m + 2 * rows + cols - 2
    if dataflow == "is":
        return math.ceil(k / rows) * math.ceil(m / cols), n + 2 * rows + cols - 2
    raise ValueError(f"unknown systolic dataflow {dataflow!r}; expected os, ws or is")


def gemm_cycles(rows: int, cols: int, dataflow: str, m: int, n: int, k: int) -> int:
    """SCALE-Sim's compute cycles ("Total Cycles", CALC mode) of one GEMM: folds * fold - 1.

    The "- 1": `double_buffered_scratchpad.service_memory_requests` reports the cycle of the
    last ofmap demand row, rows being numbered from 0.
    """
    if min(m, n, k) <= 0:
        return 0
    folds, per_fold = folds_and_fold_cycles(rows, cols, dataflow, m, n, k)
    return folds * per_fold - 1


def layer_cycles(cfg: SystolicConfig, m: int, n: int, k: int, groups: int = 1) -> int:
    """Cycles of a layer-phase's GEMM view on `cfg`; a grouped convolution runs its `groups`
    GEMMs one after another (SCALE-Sim models no groups; its depth-wise layers are split into
    one layer a channel, `topology_utils.topologies.load_arrays`, the same thing)."""
    return groups * gemm_cycles(cfg.rows, cfg.cols, cfg.dataflow, m, n, k)


