"""One T5 decoder step for a running batch (continuous batching), from caches kept on the device.

Shapes: B running rows, S encoder positions, T decoder columns, H heads, K head width, D model
width, F feed-forward width, L decoder layers, V vocabulary.

The step is written out over weights fused once per base (``DecoderWeights``: q/k/v of the
self-attention in one matrix, the two halves of a gated feed-forward in one, the cross-attention
keys and values of every layer in one, so that a joining row's are one matrix product), with
``F.rms_norm`` and fused activations, because the per-row caches must follow rows that come and go:
``DecoderCache`` keeps every row's self-attention keys/values in one preallocated buffer (a column
per step, grown in chunks), so a step writes one column instead of concatenating every layer's
cache. All rows share the column being written: a row that joins later has no entries before its
first column (masked), so every row's newest position is the same column and T5's relative
position bias (which depends only on the distance to the query) is one table for the batch.
``StepDecoder.self_check`` holds the step against the base model's own forward pass.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

CONTINUOUS_TYPES = ("t5", "mt5")  # one relative-bias table shared by all layers (umt5 has one per layer)
Attention = Literal["sdpa", "math"]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # transformers' gelu_new is the tanh form
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "silu": F.silu,
    "swish": F.silu,
}


@dataclass(frozen=True)
class Layer:
    """One decoder layer's weights, fused where a step multiplies the same input by several."""

    self_norm: torch.Tensor  # (D,)
    qkv: torch.Tensor  # (3HK, D): q, k and v of the self-attention
    self_out: torch.Tensor  # (D, HK)
    cross_norm: torch.Tensor
    cross_q: torch.Tensor  # (HK, D)
    cross_out: torch.Tensor  # (D, HK)
    ff_norm: torch.Tensor
    wi: torch.Tensor  # (2F, D) gated (wi_0 then wi_1), else (F, D)
    wo: torch.Tensor  # (D, F)


class DecoderWeights:
    """A T5 decoder's weights as the step uses them, built once per base model (``of``). The fused
    matrices are copies (the base keeps its own for the static path): for the decoder of T5-large
    about 250M more parameters. The rest are the base's own tensors."""

    _built: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, model) -> DecoderWeights:
        weights = cls._built.get(model)
        if weights is None:
            weights = cls._built[model] = cls(model)
        return weights

    @torch.no_grad()
    def __init__(self, model) -> None:
        config = model.config
        if config.model_type not in CONTINUOUS_TYPES:
            raise ValueError(f"continuous batching supports {CONTINUOUS_TYPES}, not {config.model_type!r}")
        blocks = model.decoder.block
        self.heads = config.num_heads
        self.head_dim = config.d_kv
        self.d_model = config.d_model
        self.eps = config.layer_norm_epsilon
        self.gated = bool(config.is_gated_act)
        act = config.dense_act_fn
        if act in ACTIVATIONS:
            self.act = ACTIVATIONS[act]
        else:  # transformers' own, whatever it is
            from transformers.activations import ACT2FN

            self.act = ACT2FN[act]
        layers, cross_kv = [], []
        for block in blocks:
            sa, ca, ff = block.layer[0], block.layer[1], block.layer[2]
            attn, cross, dense = sa.SelfAttention, ca.EncDecAttention, ff.DenseReluDense
            wi = torch.cat([dense.wi_0.weight, dense.wi_1.weight]) if self.gated else dense.wi.weight
            layers.append(
                Layer(
                    self_norm=sa.layer_norm.weight,
                    qkv=torch.cat([attn.q.weight, attn.k.weight, attn.v.weight]),
                    self_out=attn.o.weight,
                    cross_norm=ca.layer_norm.weight,
                    cross_q=cross.q.weight,
                    cross_out=cross.o.weight,
                    ff_norm=ff.layer_norm.weight,
                    wi=wi,
                    wo=dense.wo.weight,
                )
            )
            cross_kv += [cross.k.weight, cross.v.weight]
        self.layers = layers
        self.cross_kv = torch.cat(cross_kv)  # (L*2*HK, D): layer by layer, keys then values
        self.embed = model.decoder.embed_tokens.weight
        self.final_norm = model.decoder.final_layer_norm.weight
        self.lm_head = model.lm_head.weight
        scale = getattr(config, "scale_decoder_outputs", None)
        self.scale = (
            config.d_model**-0.5 if (config.tie_word_embeddings if scale is None else scale) else None
        )
        first = blocks[0].layer[0].SelfAttention
        self.bias_table = first.relative_attention_bias.weight  # (buckets, H)
        self.bucket = first._relative_position_bucket
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        self._by_distance = torch.zeros(self.heads, 0, dtype=self.embed.dtype, device=self.embed.device)

    def bias_by_distance(self, columns: int) -> torch.Tensor:
        """T5's relative position bias (H, columns) of a query over a key ``d`` positions before it,
        for d = 0 .. columns-1 (computed once for the widest buffer seen)."""
        if columns > self._by_distance.shape[1]:
            distance = torch.arange(columns, device=self.embed.device)
            buckets = self.bucket(
                -distance, bidirectional=False, num_buckets=self.num_buckets, max_distance=self.max_distance
            )
            self._by_distance = F.embedding(buckets, self.bias_table).T.contiguous()  # (H, columns)
        return self._by_distance[:, :columns]


class DecoderCache:
    """Every running row's keys and values on the device.

    ``self_kv`` (L, 2, rows, H, columns, K): the self-attention's, one column per step. All rows
    write the same column ``t``; a row's own columns start where it joined (``joined``), the columns
    before are padding, masked; ``start`` is the first column any row uses. When the buffer is full
    the used columns move to the front, or it grows by ``grow`` columns.
    ``cross_kv`` (L, 2, rows, H, S, K): the cross-attention's, set when a row joins (``enc_len`` real
    positions, right-padded). Rows that leave are compacted: the rows after them move down.
    Buffers start zeroed, so every unused entry is a finite number the masks give zero weight.
    """

    def __init__(self, weights: DecoderWeights, rows: int = 8, columns: int = 64, grow: int = 64) -> None:
        self.weights = weights
        self.layers = len(weights.layers)
        self.grow = grow
        self.device, self.dtype = weights.embed.device, weights.embed.dtype
        self.self_kv = self._zeros(rows, columns)
        self.cross_kv = self._zeros(rows, 0)
        self.rows = 0
        self.t = 0  # the column the next step writes
        self.start = 0  # the first column a running row uses
        self.joined = torch.zeros(rows, dtype=torch.long, device=self.device)  # (rows,) first own column
        self.enc_len = torch.zeros(rows, dtype=torch.long, device=self.device)  # (rows,) encoder positions
        self.enc_used = 0  # the longest encoder length of the running rows
        self._cross_bias: torch.Tensor | None = None
        self._index: torch.Tensor | None = None

    def _zeros(self, rows: int, columns: int) -> torch.Tensor:
        w = self.weights
        shape = (self.layers, 2, rows, w.heads, columns, w.head_dim)
        return torch.zeros(shape, dtype=self.dtype, device=self.device)

    @property
    def capacity(self) -> int:
        return self.self_kv.shape[2]

    def _reserve_rows(self, rows: int) -> None:
        if rows <= self.capacity:
            return
        grown = max(rows, 2 * self.capacity)
        for name in ("self_kv", "cross_kv"):
            old = getattr(self, name)
            new = self._zeros(grown, old.shape[4])
            new[:, :, : self.rows] = old[:, :, : self.rows]
            setattr(self, name, new)
        for name in ("joined", "enc_len"):
            old = getattr(self, name)
            new = torch.zeros(grown, dtype=torch.long, device=self.device)
            new[: self.rows] = old[: self.rows]
            setattr(self, name, new)

    def join(self, cross_kv: torch.Tensor, enc_len: torch.Tensor) -> None:
        """Add rows: their cross-attention keys/values (L, 2, n, H, S', K) and encoder lengths (n,)."""
        n, width = cross_kv.shape[2], cross_kv.shape[4]
        self._reserve_rows(self.rows + n)
        if width > self.cross_kv.shape[4]:
            grown = self._zeros(self.capacity, width)
            used = self.enc_used
            grown[:, :, : self.rows, :, :used] = self.cross_kv[:, :, : self.rows, :, :used]
            self.cross_kv = grown
        rows = slice(self.rows, self.rows + n)
        self.cross_kv[:, :, rows, :, :width] = cross_kv
        self.enc_len[rows] = enc_len
        self.joined[rows] = self.t  # no own column yet: the next step writes their first
        if self.rows == 0:
            self.start = self.t
        self.rows += n
        self.enc_used = max(self.enc_used, width)
        self._cross_bias = None

    def keep(self, keep: list[int]) -> None:
        """Keep the rows ``keep`` (ascending indices), in that order, compacted to the front."""
        first = next((i for i, b in enumerate(keep) if b != i), len(keep))
        if first < len(keep):  # rows from ``first`` on move down
            moved = torch.tensor(keep[first:], device=self.device)
            to = slice(first, len(keep))
            t0, t1 = self.start, self.t
            self.self_kv[:, :, to, :, t0:t1] = self.self_kv[:, :, :, :, t0:t1].index_select(2, moved)
            used = self.enc_used
            self.cross_kv[:, :, to, :, :used] = self.cross_kv[:, :, :, :, :used].index_select(2, moved)
            self.joined[to] = self.joined.index_select(0, moved)
            self.enc_len[to] = self.enc_len.index_select(0, moved)
        self.rows = len(keep)
        if self.rows:
            self.start = int(self.joined[: self.rows].min())
            self.enc_used = int(self.enc_len[: self.rows].max())
        else:
            self.start = self.t = self.enc_used = 0
        self._cross_bias = None

    def reserve_column(self) -> None:
        """Make room for column ``t``: move the used columns to the front, or grow the buffer."""
        columns = self.self_kv.shape[4]
        if self.t < columns:
            return
        if self.start > columns // 2:  # at least half is free at the front: move there
            used = self.self_kv[:, :, : self.rows, :, self.start : self.t].clone()
            self.self_kv[:, :, : self.rows, :, : used.shape[4]] = used
        else:
            grown = self._zeros(self.capacity, columns + self.grow)
            grown[:, :, : self.rows, :, : self.t - self.start] = self.self_kv[
                :, :, : self.rows, :, self.start : self.t
            ]
            self.self_kv = grown
        self.joined[: self.rows] -= self.start
        self.t -= self.start
        self.start = 0

    def self_bias(self) -> torch.Tensor:
        """Position bias plus mask of the self-attention of the query at column ``t`` over every
        column of the buffer (a row's own columns ``joined``..``t``; the others masked): (B, H, 1, C).
        Over the whole buffer, so that a step's shapes change only when rows join or leave or the
        buffer grows (what a compiled step needs)."""
        columns = self.self_kv.shape[4]
        index = self._columns(columns)
        distance = (self.t - index).clamp_(min=0)
        bias = self.weights.bias_by_distance(columns).index_select(1, distance)  # (H, C)
        own = (index[None, :] >= self.joined[: self.rows, None]) & (index[None, :] <= self.t)  # (B, C)
        mask = torch.zeros(own.shape, dtype=self.dtype, device=self.device).masked_fill_(
            ~own, torch.finfo(self.dtype).min
        )
        return bias[None, :, None, :] + mask[:, None, None, :]

    def _columns(self, columns: int) -> torch.Tensor:
        if self._index is None or self._index.shape[0] != columns:
            self._index = torch.arange(columns, device=self.device)
        return self._index

    def cross_bias(self) -> torch.Tensor:
        """Padding mask of the cross-attention: (B, 1, 1, S)."""
        if self._cross_bias is None:
            positions = torch.arange(self.enc_used, device=self.device)
            padding = positions[None, :] >= self.enc_len[: self.rows, None]
            self._cross_bias = (padding * torch.finfo(self.dtype).min).to(self.dtype)[:, None, None, :]
        return self._cross_bias


class StepDecoder:
    """One T5 decoder step for the rows of a ``DecoderCache``. ``attention``: "sdpa" (PyTorch's
    fused scaled-dot-product attention, with T5's bias as its mask and no scaling) or "math" (the
    products and softmax written out, as transformers does). ``compile``: the step's arithmetic
    through ``torch.compile`` (inductor, dynamic shapes; on CUDA with CUDA graphs), compiled on first
    use and again when a shape it has not seen comes (rows joining or leaving, the buffer growing).
    ``of`` gives one decoder per base and options, so that a compiled step is compiled once."""

    _built: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, model, attention: Attention = "sdpa", compile: bool = False) -> StepDecoder:
        decoders = cls._built.setdefault(model, {})
        if (attention, compile) not in decoders:
            decoders[attention, compile] = cls(model, attention, compile)
        return decoders[attention, compile]

    def __init__(self, model, attention: Attention = "sdpa", compile: bool = False) -> None:
        self.model = model
        self.weights = DecoderWeights.of(model)
        self.attention = attention
        self.heads = self.weights.heads
        self.head_dim = self.weights.head_dim
        self.compiled = compile
        if compile:
            cuda = self.weights.embed.device.type == "cuda"
            self._forward = torch.compile(  # type: ignore[method-assign]
                self._forward, dynamic=True, mode="reduce-overhead" if cuda else None
            )

    def new_cache(self, rows: int = 8, columns: int = 64) -> DecoderCache:
        """An empty cache for ``rows`` rows (it grows), ``columns`` decoder positions at first and
        more in chunks of ``columns``."""
        return DecoderCache(self.weights, rows=rows, columns=columns, grow=columns)

    def cross_kv(self, encoded: torch.Tensor) -> torch.Tensor:
        """Cross-attention keys and values of every layer for encoder states (n, S, D), in one
        matrix product: (L, 2, n, H, S, K)."""
        n, s, _ = encoded.shape
        w = self.weights
        kv = F.linear(encoded, w.cross_kv).view(n, s, len(w.layers), 2, w.heads, w.head_dim)
        return kv.permute(2, 3, 0, 4, 1, 5)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if self.attention == "sdpa":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
        scores = q @ k.transpose(-1, -2) + bias
        return F.softmax(scores.float(), dim=-1).to(q.dtype) @ v

    def step(self, tokens: torch.Tensor, cache: DecoderCache) -> torch.Tensor:
        """Feed one token per row (B,) at column ``cache.t``; returns float32 logits (B, V). The
        caller advances ``cache.t`` after."""
        cache.reserve_column()
        column = torch.tensor([cache.t], device=cache.device)
        return self._forward(
            tokens, column, cache.self_kv, cache.cross_kv, cache.self_bias(), cache.cross_bias()
        )

    def _forward(
        self,
        tokens: torch.Tensor,
        column: torch.Tensor,
        self_kv: torch.Tensor,
        cross_kv: torch.Tensor,
        self_bias: torch.Tensor,
        cross_bias: torch.Tensor,
    ) -> torch.Tensor:
        """The step's arithmetic, what ``compile`` compiles: writes ``column`` (1,) of ``self_kv``
        for rows 0..B-1 and attends over the whole buffer (``self_bias`` masks what is not theirs)."""
        w, B = self.weights, tokens.shape[0]
        H, K, D = w.heads, w.head_dim, w.d_model
        S = cross_bias.shape[-1]
        rows_self = self_kv[:, :, :B]  # (L, 2, B, H, C, K)
        rows_cross = cross_kv[:, :, :B, :, :S]  # (L, 2, B, H, S, K)
        hidden = F.embedding(tokens, w.embed)  # (B, D)
        for i, layer in enumerate(w.layers):
            x = F.rms_norm(hidden, (D,), layer.self_norm, w.eps)
            qkv = F.linear(x, layer.qkv).view(B, 3, H, 1, K)
            kv = rows_self[i]  # (2, B, H, C, K)
            kv.index_copy_(3, column, qkv[:, 1:].transpose(0, 1))
            attended = self._attend(qkv[:, 0], kv[0], kv[1], self_bias)  # (B, H, 1, K)
            hidden = hidden + F.linear(attended.reshape(B, H * K), layer.self_out)
            x = F.rms_norm(hidden, (D,), layer.cross_norm, w.eps)
            q = F.linear(x, layer.cross_q).view(B, H, 1, K)
            kv = rows_cross[i]
            attended = self._attend(q, kv[0], kv[1], cross_bias)
            hidden = hidden + F.linear(attended.reshape(B, H * K), layer.cross_out)
            x = F.rms_norm(hidden, (D,), layer.ff_norm, w.eps)
            h = F.linear(x, layer.wi)
            if w.gated:
                gate, linear = h.chunk(2, dim=-1)
                h = w.act(gate) * linear
            else:
                h = w.act(h)
            hidden = hidden + F.linear(h, layer.wo)
        hidden = F.rms_norm(hidden, (D,), w.final_norm, w.eps)
        if w.scale is not None:
            hidden = hidden * w.scale
        return F.linear(hidden, w.lm_head).float()

    @torch.inference_mode()
    def self_check(self, steps: int = 3, tolerance: float = 1e-3) -> float:
        """Max |difference| between this decoder's logits and the base model's forward pass on a
        probe input, relative to the logits' largest magnitude; raises above ``tolerance``."""
        model = self.model
        device = next(model.parameters()).device
        gen = torch.Generator().manual_seed(0)
        vocab = model.config.vocab_size
        enc_ids = torch.randint(3, vocab, (2, 7), generator=gen).to(device)
        enc_mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3], device=device)
        start = model.config.decoder_start_token_id
        dec = torch.cat(
            [torch.full((2, 1), start), torch.randint(3, vocab, (2, steps - 1), generator=gen)], 1
        )
        dec = dec.to(device)
        reference = model(input_ids=enc_ids, attention_mask=enc_mask, decoder_input_ids=dec).logits.float()
        encoded = model.get_encoder()(input_ids=enc_ids, attention_mask=enc_mask).last_hidden_state
        cache = self.new_cache(rows=2)
        cache.join(self.cross_kv(encoded), enc_mask.sum(1))
        worst = 0.0
        for t in range(steps):
            logits = self.step(dec[:, t], cache)
            cache.t += 1
            worst = max(worst, float((logits - reference[:, t]).abs().max()))
        relative = worst / max(float(reference.abs().max()), 1.0)
        if relative > tolerance:
            raise RuntimeError(
                f"continuous decoder disagrees with the base model by {relative:.3g} (relative): "
                "this transformers version changed T5; serve with --scheduling static"
            )
        return relative
