"""One T5 decoder step for a batch with left-padded self-attention caches (continuous batching).

Shapes: B running rows, S encoder positions, T decoder positions so far, H heads, K head width,
D model width, V vocabulary.

The decoder step is written out here (reusing the base's own projection, norm and feed-forward
modules) because the per-row caches must be merged and split as rows come and go: decoder caches
are left-padded so that every row's newest position is the last column, which keeps T5's relative
position bias exact for every row. ``StepDecoder.self_check`` holds it against the base model's own
forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
