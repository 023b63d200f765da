"""Continuous (iteration-level) batching for encoder-decoder bases of the T5 family.

Shapes: B running rows, S encoder positions, T decoder positions so far, H heads,
K head width, D model width, V vocabulary, L decoder layers.

Rows join the running batch between decoder steps and leave as soon as they finish, so
a short request never waits for a long one and a new request waits at most one step.
Joining rows get their adapters and prompts applied and ONE encoder pass for all of
them together; every step then runs ONE decoder pass for every running row, whatever
its adapter. The decoder step is written out here (reusing the base's own projection,
norm and feed-forward modules) because the per-row caches must be merged and split as
rows come and go: decoder caches are left-padded so that every row's newest position is
the last column, which keeps T5's relative position bias exact for every row.
``StepDecoder.self_check`` holds it against the base model's own forward pass.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .generation import GenerationOutput, GenerationParams, draw, seed_for
from .model import decode_text

CONTINUOUS_TYPES = ("t5", "mt5")  # one relative-bias table shared by all layers (umt5 has one per layer)


class StepDecoder:
    """One T5 decoder step for a batch with left-padded self-attention caches."""

    def __init__(self, model) -> None:
        config = model.config
        if config.model_type not in CONTINUOUS_TYPES:
            raise ValueError(f"continuous batching supports {CONTINUOUS_TYPES}, not {config.model_type!r}")
        self.model = model
        self.blocks = model.decoder.block
        self.heads = config.num_heads
        self.head_dim = config.d_kv
        first = self.blocks[0].layer[0].SelfAttention
        self.bias_table = first.relative_attention_bias
        self.bucket = first._relative_position_bucket
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        scale = getattr(config, "scale_decoder_outputs", None)
        self.scale = (
            config.d_model**-0.5 if (config.tie_word_embeddings if scale is None else scale) else None
        )

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, H*K) -> (B, H, L, K)
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, L, K) -> (B, L, H*K)
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], self.heads * self.head_dim)

    def cross_cache(self, encoded: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Cross-attention keys and values of every layer for encoder states (B, S, D)."""
        cache = []
        for block in self.blocks:
            attn = block.layer[1].EncDecAttention
            cache.append((self._split(attn.k(encoded)), self._split(attn.v(encoded))))  # (B, H, S, K) each
        return cache

    def position_bias(self, key_len: int, device: torch.device) -> torch.Tensor:
        """Bias of the query at the last position over keys 0..key_len-1: (1, H, 1, key_len)."""
        relative = torch.arange(key_len, device=device) - (key_len - 1)
        buckets = self.bucket(
            relative, bidirectional=False, num_buckets=self.num_buckets, max_distance=self.max_distance
        )
        return self.bias_table(buckets).T[None, :, None, :]

    def step(
        self,
        tokens: torch.Tensor,
        self_cache: list[tuple[torch.Tensor, torch.Tensor]],
        self_mask: torch.Tensor,
        cross_cache: list[tuple[torch.Tensor, torch.Tensor]],
        cross_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Feed one token per row (B,); self_mask (B, T+1) already covers the new position.

        Returns float32 logits (B, V) and the self-attention caches grown by one position.
        """
        hidden = self.model.decoder.embed_tokens(tokens)[:, None, :]  # (B, 1, D)
        dtype = hidden.dtype
        low = torch.finfo(dtype).min
        self_bias = self.position_bias(self_mask.shape[1], tokens.device).to(dtype) + (
            (1 - self_mask[:, None, None, :].to(dtype)) * low
        )  # (B, H, 1, T+1)
        cross_bias = (1 - cross_mask[:, None, None, :].to(dtype)) * low  # (B, 1, 1, S)
        grown = []
        for block, (past_k, past_v), (cross_k, cross_v) in zip(
            self.blocks, self_cache, cross_cache, strict=True
        ):
            sa, ca, ff = block.layer[0], block.layer[1], block.layer[2]
            x = sa.layer_norm(hidden)
            attn = sa.SelfAttention
            keys = torch.cat([past_k, self._split(attn.k(x))], dim=2)  # (B, H, T+1, K)
            values = torch.cat([past_v, self._split(attn.v(x))], dim=2)
            grown.append((keys, values))
            scores = self._split(attn.q(x)) @ keys.transpose(-1, -2) + self_bias
            hidden = hidden + attn.o(self._merge(F.softmax(scores.float(), dim=-1).to(dtype) @ values))
            x = ca.layer_norm(hidden)
            attn = ca.EncDecAttention
            scores = self._split(attn.q(x)) @ cross_k.transpose(-1, -2) + cross_bias
            hidden = hidden + attn.o(self._merge(F.softmax(scores.float(), dim=-1).to(dtype) @ cross_v))
            hidden = ff(hidden)
        hidden = self.model.decoder.final_layer_norm(hidden)
        if self.scale is not None:
            hidden = hidden * self.scale
        return self.model.lm_head(hidden)[:, 0].float(), grown

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
        cross = self.cross_cache(encoded)
        empty = encoded.new_zeros(2, self.heads, 0, self.head_dim)
        cache = [(empty, empty)] * len(self.blocks)
        worst = 0.0
        for t in range(steps):
            logits, cache = self.step(
                dec[:, t], cache, torch.ones(2, t + 1, device=device, dtype=torch.long), cross, enc_mask
            )
            worst = max(worst, float((logits - reference[:, t]).abs().max()))
        relative = worst / max(float(reference.abs().max()), 1.0)
        if relative > tolerance:
            raise RuntimeError(
                f"continuous decoder disagrees with the base model by {relative:.3g} (relative): "
                "this transformers version changed T5; serve with --scheduling static"
            )
        return relative


@dataclass(eq=False)
class Running:
    """One row in the running batch."""

    key: Hashable
    params: GenerationParams
    input_tokens: int
    seed: int | None
    generator: torch.Generator | None
    tokens: list[int] = field(default_factory=list)


class ContinuousBatch:
    """Rows decoding together; ``admit`` adds rows, ``step`` advances all of them by one token.

    ``model`` is an AdaptedModel with an encoder-decoder base; the rows' adapters must be in
    its bank (slot ids) when they are admitted; afterwards the adapters are no longer needed.
    """

    def __init__(self, model) -> None:
        self.model = model
        base = model.base.model
        self.decoder = StepDecoder(base)
        self.eos = model.tokenizer.eos_token_id
        self.start = base.config.decoder_start_token_id
        self.vocab = base.config.vocab_size
        self.device = model.base.device
        self.rows: list[Running] = []
        self._reset()

    def _reset(self) -> None:
        self.self_cache: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.cross_cache: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.self_mask = torch.zeros(0, 0, dtype=torch.long, device=self.device)  # (B, T)
        self.cross_mask = torch.zeros(0, 0, dtype=torch.long, device=self.device)  # (B, S)
        self.last = torch.zeros(0, dtype=torch.long, device=self.device)  # (B,)
        self.seen = torch.zeros(0, self.vocab, dtype=torch.bool, device=self.device)  # (B, V) for penalties

    def __len__(self) -> int:
        return len(self.rows)

    @torch.inference_mode()
    def admit(
        self,
        keys: Sequence[Hashable],
        input_ids: Sequence[Sequence[int]],
        slot_ids: Sequence[int],
        params: Sequence[GenerationParams],
    ) -> None:
        """Apply the rows' adapters, run ONE encoder pass for them, and join them to the batch."""
        for p in params:
            if p.num_beams != 1:
                raise ValueError("continuous batching runs greedy and sampled rows; use generate() for beams")
        embeds, mask = self.model.embed(input_ids, slot_ids)  # (n, S', D), (n, S')
        encoded = self.model.base.model.get_encoder()(
            inputs_embeds=embeds, attention_mask=mask
        ).last_hidden_state
        cross = self.decoder.cross_cache(encoded)
        n = len(keys)
        heads, width = self.decoder.heads, self.decoder.head_dim
        past = self.self_mask.shape[1]
        # new rows have no decoder positions yet: left-pad them to the running length
        new_self = [(encoded.new_zeros(n, heads, past, width),) * 2 for _ in self.decoder.blocks]
        self.self_cache = _concat_rows(self.self_cache, new_self, pad_dim=2) if self.rows else new_self
        self.cross_cache = _concat_rows(self.cross_cache, cross, pad_dim=2) if self.rows else cross
        self.self_mask = (
            torch.cat([self.self_mask, mask.new_zeros(n, past)]) if self.rows else mask.new_zeros(n, 0)
        )
        self.cross_mask = _pad_cat(self.cross_mask, mask) if self.rows else mask
        self.last = torch.cat([self.last, torch.full((n,), self.start, dtype=torch.long, device=self.device)])
        seen = torch.zeros(n, self.vocab, dtype=torch.bool, device=self.device)
        seen[:, self.start] = True  # HF's repetition penalty also sees the decoder start token
        self.seen = torch.cat([self.seen, seen])
        for key, ids, p in zip(keys, input_ids, params, strict=True):
            seed = seed_for(p)
            gen = torch.Generator().manual_seed(seed) if seed is not None else None
            self.rows.append(Running(key, p, len(ids), seed, gen))

    @torch.inference_mode()
    def step(self) -> list[tuple[Hashable, GenerationOutput]]:
        """Advance every running row by one token; returns the rows that finished, and drops them."""
        if not self.rows:
            return []
        self.self_mask = torch.cat([self.self_mask, self.self_mask.new_ones(len(self.rows), 1)], dim=1)
        logits, self.self_cache = self.decoder.step(
            self.last, self.self_cache, self.self_mask, self.cross_cache, self.cross_mask
        )
        tokens = self._choose(logits)
        finished: list[tuple[Hashable, GenerationOutput]] = []
        keep: list[int] = []
        for b, (row, token) in enumerate(zip(self.rows, tokens.tolist(), strict=True)):
            if token == self.eos:
                finished.append((row.key, self._output(row, "eos")))
                continue
            row.tokens.append(token)
            if len(row.tokens) >= row.params.max_new_tokens:
                finished.append((row.key, self._output(row, "length")))
            else:
                keep.append(b)
        self.seen[torch.arange(len(self.rows), device=self.device), tokens] = True
        self.last = tokens
        if len(keep) < len(self.rows):
            self._keep(keep)
        return finished

    def _choose(self, logits: torch.Tensor) -> torch.Tensor:
        """Each row's next token: its penalty, its min length, then greedy or its own sampling stream."""
        rows = self.rows
        if any(r.params.repetition_penalty != 1.0 for r in rows):
            penalty = torch.tensor([r.params.repetition_penalty for r in rows], device=logits.device)[:, None]
            logits = torch.where(
                self.seen, torch.where(logits < 0, logits * penalty, logits / penalty), logits
            )
        short = [b for b, r in enumerate(rows) if len(r.tokens) < r.params.min_new_tokens]
        if short:
            logits[torch.tensor(short, device=logits.device), self.eos] = float("-inf")
        tokens = logits.argmax(-1)
        sampled = [b for b, r in enumerate(rows) if r.params.do_sample]
        if sampled:
            index = torch.tensor(sampled, device=logits.device)
            ps = [rows[b].params for b in sampled]
            drawn = draw(
                logits.index_select(0, index),
                torch.tensor([p.temperature for p in ps], device=logits.device),
                torch.tensor([p.top_p for p in ps], device=logits.device),
                [p.top_k for p in ps],
                [g for b in sampled if (g := rows[b].generator) is not None],  # every sampled row has one
            )
            tokens[index] = drawn
        return tokens

    def _keep(self, keep: list[int]) -> None:
        """Drop finished rows, then the padding columns no remaining row needs."""
        self.rows = [self.rows[b] for b in keep]
        if not self.rows:
            self._reset()
            return
        index = torch.tensor(keep, device=self.device)
        self.self_mask = self.self_mask.index_select(0, index)
        self.cross_mask = self.cross_mask.index_select(0, index)
        self.last = self.last.index_select(0, index)
        self.seen = self.seen.index_select(0, index)
        lead = int((self.self_mask.cumsum(1) == 0).sum(1).min())  # left padding shared by every row
        used = int(self.cross_mask.sum(1).max())  # encoder states are right-padded
        self.self_mask = self.self_mask[:, lead:]
        self.cross_mask = self.cross_mask[:, :used]
        self.self_cache = [
            (k.index_select(0, index)[:, :, lead:], v.index_select(0, index)[:, :, lead:])
            for k, v in self.self_cache
        ]
        self.cross_cache = [
            (k.index_select(0, index)[:, :, :used], v.index_select(0, index)[:, :, :used])
            for k, v in self.cross_cache
        ]

    def _output(self, row: Running, reason: str) -> GenerationOutput:
        text = decode_text(self.model.tokenizer, row.tokens)
        return GenerationOutput(text, list(row.tokens), row.input_tokens, len(row.tokens), reason, row.seed)


def _pad_cat(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Concatenate right-padded (B, S) masks of different widths."""
    width = max(old.shape[1], new.shape[1])
    return torch.cat([F.pad(old, (0, width - old.shape[1])), F.pad(new, (0, width - new.shape[1]))])


def _concat_rows(old, new, pad_dim: int):
    """Concatenate per-layer (k, v) caches along rows, right-padding the position dim to the wider one."""
    merged = []
    for (ok, ov), (nk, nv) in zip(old, new, strict=True):
        width = max(ok.shape[pad_dim], nk.shape[pad_dim])
        pads = [(0, 0, 0, width - t.shape[pad_dim]) for t in (ok, nk)]
        merged.append(
            (
                torch.cat([F.pad(ok, pads[0]), F.pad(nk, pads[1])]),
                torch.cat([F.pad(ov, pads[0]), F.pad(nv, pads[1])]),
            )
        )
    return merged
