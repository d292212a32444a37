"""SCALE-Sim compatibility: its topology CSV as a workload, and the GEMM view of a layer.

A SCALE-Sim topology CSV (scalesim 3.0.0, `scalesim/topology_utils.py`,
`topologies.load_arrays`) has a header row, then one layer a row: layer name, IFMAP height,
IFMAP width, filter height, filter width, channels, number of filters, stride, and a
trailing comma (the reader drops the last field). There is no padding field: the ifmap sizes
include the padding. The output size is `ceil((H - R + stride) / stride)`
(`topologies.topo_calc_hyperparams`); one stride serves both directions. An optional
ninth field "N:M" gives a structured-sparsity ratio: refused here, as any field past the
eighth, rather than ignored (the layers run dense; a user who wrote 2:4 would get dense
figures without a word).

`read_topology` turns each row into a dense `LayerCapture`: all-ones non-zero maps, batch 1,
padding 0, the given stride, so the whole pipeline (tiling, counting, simulation) runs on it.
When `(H - R) % stride != 0` SCALE-Sim's ceil counts one more (partial) output than a
convolution of the given input would; the input is then grown to `(P - 1) * stride + R` so
that the layer has exactly SCALE-Sim's P x Q outputs and MACs.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from pathlib import Path

import torch

from desim.configio import read_bytes, read_text
from desim.errors import ConfigError, out_of_memory_as
from mappings.capture import BitMap, LayerCapture, PackedLayer
from mappings.counting import BP, FF, WG

COLUMNS = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
           "Channels", "Num Filter", "Strides")


def topology_sha256(path: str | Path) -> str:
    """The sha256 of a topology CSV's bytes: what the workload cache keys and config.json
    records, so that an edited file is never taken for the one that ran."""
    return hashlib.sha256(read_bytes(Path(path), "a SCALE-Sim topology CSV")).hexdigest()


def read_topology_rows(path: str | Path) -> list[tuple[str, int, int, int, int, int, int, int]]:
    """(name, H, W, R, S, C, K, stride) of every layer of a SCALE-Sim topology CSV."""
    return [row for _, row in _numbered_rows(path)]


def _numbered_rows(path: str | Path
                   ) -> list[tuple[int, tuple[str, int, int, int, int, int, int, int]]]:
    """`read_topology_rows`' rows, each with the file's line it starts on."""
    path = Path(path)
    if not path.exists():
        raise ConfigError("SCALE-Sim topology file not found", file=str(path))
    rows = []
    text = read_text(path, "a SCALE-Sim topology CSV")  # a directory, not UTF-8: said there
    reader = csv.reader(io.StringIO(text, newline=""))
    lines, last = [], 0  # each row with the file's line it starts on (blank lines count)
    for row in reader:
        if any(cell.strip() for cell in row):
            lines.append((last + 1, row))
        last = reader.line_num
    if lines and any(_is_integer(cell) for cell in lines[0][1][1:]):
        # the first row is always skipped as the header: a layer there was lost unsaid
        raise ConfigError(f"the header row is missing: line {lines[0][0]} is a layer "
                          f"({','.join(lines[0][1]).strip()}), where a SCALE-Sim topology "
                          f"starts with the header row ({', '.join(COLUMNS)},)", file=str(path))
    if lines:  # another tool's column order was read as SCALE-Sim's (C and K swapped)
        given = [" ".join(cell.split()).lower() for cell in lines[0][1][:len(COLUMNS)]]
        if given != [name.lower() for name in COLUMNS]:
            raise ConfigError(f"line {lines[0][0]}: the header names "
                              f"{', '.join(c.strip() for c in lines[0][1][:len(COLUMNS)])}; "
                              f"expected SCALE-Sim's columns, in order: {', '.join(COLUMNS)}",
                              file=str(path))
    names: set[str] = set()
    for i, row in lines[1:]:
        cells = [c.strip() for c in row]
        if cells and cells[-1] == "":
            cells = cells[:-1]  # the trailing comma SCALE-Sim's rows end with
        if len(cells) < len(COLUMNS):
            raise ConfigError(f"line {i}: expected {len(COLUMNS)} fields "
                              f"({', '.join(COLUMNS)}), got {len(cells)}", file=str(path))
        if any(cells[len(COLUMNS):]):
            raise ConfigError(f"line {i}: a field past the {len(COLUMNS)} of SCALE-Sim's "
                              f"columns, {','.join(cells[len(COLUMNS):])!r} (its N:M sparsity?), "
                              "which desim does not model: a topology's layers run dense; "
                              "remove it (N:M sparse weights: a model with pruning method "
                              "n_m)", file=str(path))
        if not all(_is_integer(c) for c in cells[1:len(COLUMNS)]):
            raise ConfigError(f"line {i}: the fields after the layer name must be integers, "
                              f"got {cells[1:len(COLUMNS)]}", file=str(path))
        if not cells[0] or cells[0] in names:  # rows layers.csv would not tell apart
            raise ConfigError(f"line {i}: layer name {cells[0]!r} is "
                              + ("empty" if not cells[0] else "another row's too")
                              + "; expected a name of its own", file=str(path))
        names.add(cells[0])
        values = [int(c) for c in cells[1:len(COLUMNS)]]
        h, w, r, s, c, k, stride = values
        if min(values) <= 0 or r > h or s > w:
            raise ConfigError(f"line {i}: sizes must be positive and the filter no larger "
                              f"than the ifmap, got {values}", file=str(path))
        if max(values) >= 2**63:  # torch's sizes are 64-bit: a larger one was a TypeError
            raise ConfigError(f"line {i}: sizes must be less than 2^63, got {values}",
                              file=str(path))
        rows.append((i, (cells[0], h, w, r, s, c, k, stride)))
    if not rows:
        raise ConfigError("no layers in the SCALE-Sim topology", file=str(path))
    return rows


def _is_integer(cell: str) -> bool:
    """Plain ASCII digits, a minus sign allowed (int() took "1_0" for 10, and other
    scripts' digits)."""
    digits = cell.strip().removeprefix("-")
    return digits.isascii() and digits.isdigit()


def ofmap_size(ifmap: int, filt: int, stride: int) -> int:
    """SCALE-Sim's output size, `ceil((H - R + stride) / stride)`
    (`topologies.topo_calc_hyperparams`)."""
    return math.ceil((ifmap - filt + stride) / stride)


def read_topology(path: str | Path, packed: bool = False
                  ) -> list[LayerCapture] | list[PackedLayer]:
    """Dense `LayerCapture`s (batch 1, padding 0) of a SCALE-Sim topology CSV's layers;
    bit-packed (`PackedLayer`, what workloads keep) when `packed`."""
    layers: list = []
    for i, (line, (name, h, w, r, s, c, k, stride)) in enumerate(_numbered_rows(path)):
        p, q = ofmap_size(h, r, stride), ofmap_size(w, s, stride)
        h_in, w_in = (p - 1) * stride + r, (q - 1) * stride + s
        # its maps are one byte an element: a layer too large is the CSV's fault
        with out_of_memory_as(ConfigError(
                f"line {line}: layer {name!r} (inputs {c} x {h_in} x {w_in}, weights {k} x "
                f"{c} x {r} x {s}) does not fit in this machine's memory", file=str(path))):
            layer = LayerCapture(
                name=name, kind="conv",
                x_nz=torch.ones(1, c, h_in, w_in, dtype=torch.bool),
                w_nz=torch.ones(k, c, r, s, dtype=torch.bool),
                dy_nz=torch.ones(1, k, p, q, dtype=torch.bool),
                stride=stride, padding=0, needs_input_grad=i > 0)
            layers.append(_packed(layer) if packed else layer)
    return layers


def _packed(layer: LayerCapture) -> PackedLayer:
    return PackedLayer(layer.name, layer.kind, BitMap(layer.x_nz), BitMap(layer.w_nz),
                       BitMap(layer.dy_nz), layer.stride, layer.padding, layer.dilation,
                       layer.groups, layer.needs_input_grad, layer.weight_is_parameter)


def gemm_view(layer: LayerCapture, phase: int) -> tuple[int, int, int, int]:
    """(M, N, K, groups) of a layer-phase as a GEMM, per group: M x N outputs, reduction K.

    FF (SCALE-Sim's view, `scalesim/compute/operand_matrix.py`): M = batch * P * Q output
    pixels, N = K filters, K = R * S * C/groups (the convolution window). BP (dX = W^T dY):
    M = batch * H * W input pixels, N = C/groups, K = R * S * K/groups. WG (dW = X dY):
    M = C/groups * R * S, N = K/groups, K = batch * P * Q.
    """
    n_img, k_out, p, q = layer.dy_nz.shape
    _, cg, r, s = layer.w_nz.shape
    _, _, h, w = layer.x_nz.shape
    g = layer.groups
    kg = k_out // g
    if phase == FF:
        return n_img * p * q, kg, r * s * cg, g
    if phase == BP:
        return n_img * h * w, cg, r * s * kg, g
    if phase == WG:
        return cg * r * s, kg, n_img * p * q, g
    raise ValueError(f"unknown phase {phase}")
