"""A transformer encoder block (Vaswani et al. 2017; pre-norm, as in ViT), written so every
matrix product is a layer: the q, k, v and output projections and the two MLP linears are
`nn.Linear`, and the two attention products (Q K^T and attention x V) are `MatMul` modules.
The two residual connections are `Fork` and `Add` modules, and two more `Fork`s hand the
first norm's output to q, k and v (BP sums their gradients); the scaled softmax is a
`ScaledSoftmax` (common.py), so that capture sees each.

Input (batch, seq_len, dim). Parameters, with d = dim and r = mlp_ratio: attention
4 d^2 + 4 d (four d x d projections with bias), MLP 2 r d^2 + (r + 1) d, two layer norms
4 d; with d = 256, r = 4: 789,760. An optional classification head (mean over the sequence,
then Linear(d, classes)) makes it trainable alone: + 10 d + 10 = 2,570 at 10 classes.
"""

from __future__ import annotations

import math

from pydantic import PositiveInt
from torch import Tensor, nn

from mappings.models.common import Add, ArgumentError, Fork, MatMul, ScaledSoftmax

SEQ_LEN, DIM = 64, 256  # the default input: (sequence, model dimension)


class TransformerEncoderBlock(nn.Module):
    def __init__(self, dim: int = DIM, heads: int = 4, mlp_ratio: int = 4,
                 seq_len: int = SEQ_LEN, num_classes: int | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ArgumentError("heads", f"dim {dim} is not a multiple of heads {heads}")
        self.heads, self.dim = heads, dim
        self.seq_len = seq_len  # the nominal sequence length; any length runs
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.scores, self.mix = MatMul(), MatMul()  # Q K^T, then attention x V
        self.softmax = ScaledSoftmax(math.sqrt(dim // heads))
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(),
                                 nn.Linear(mlp_ratio * dim, dim))
        self.head = nn.Linear(dim, num_classes) if num_classes else None
        self.fork1, self.add1, self.fork2, self.add2 = Fork(), Add(), Fork(), Add()
        # the first norm's output goes to q, k and v: BP sums their three gradients
        self.fork_q, self.fork_kv = Fork(), Fork()

    def _split(self, t: Tensor) -> Tensor:
        """(batch, seq, dim) -> (batch, heads, seq, dim / heads)."""
        b, s, _ = t.shape
        return t.reshape(b, s, self.heads, self.dim // self.heads).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        x, skip = self.fork1(x)
        h_q, h_kv = self.fork_q(self.norm1(x))
        h_k, h_v = self.fork_kv(h_kv)
        q, k, v = self._split(self.q(h_q)), self._split(self.k(h_k)), self._split(self.v(h_v))
        attn = self.softmax(self.scores(q, k.transpose(-2, -1)))
        mixed = self.mix(attn, v).transpose(1, 2).reshape(x.shape)
        x, skip = self.fork2(self.add1(self.out(mixed), skip))
        x = self.add2(self.mlp(self.norm2(x)), skip)
        return self.head(x.mean(1)) if self.head is not None else x


def transformer_block(num_classes: PositiveInt | None = 10, dim: PositiveInt = DIM,
                      heads: PositiveInt = 4, mlp_ratio: PositiveInt = 4,
                      seq_len: PositiveInt = SEQ_LEN) -> TransformerEncoderBlock:
    """The block with a classification head (`num_classes=None`: the bare block, whose output
    is (batch, seq, dim))."""
    return TransformerEncoderBlock(dim, heads, mlp_ratio, seq_len, num_classes)
