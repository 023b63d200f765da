"""The one per-row decoding policy. Every decoding path calls it: the static path (through a
``transformers`` logits processor), continuous batching, and the naive baseline.

Shapes: R rows (batch rows times beams), V vocabulary, S sampled rows.

A row's rules, in the order they apply at each step:
1. repetition penalty on every token the row has seen (the decoder start token included, as
   ``transformers`` does): a seen token's logit is divided by the penalty, or multiplied when
   negative;
2. EOS is forbidden while the row has fewer than ``min_new_tokens`` tokens;
3. the token: greedy argmax, or drawn from the row's own random stream (``seed``) by inverse CDF
   over its temperature/top-k/top-p filtered distribution, so a seeded row draws the same tokens
   alone or in any batch, on any device;
4. the row ends on EOS (which is not part of its output) or when it holds ``max_new_tokens``.

``RowDecoding`` is one row's state (its stream, its tokens, rule 4); ``TokenChooser`` holds rules 1-3
for a batch of rows as tensors, with ``filter``/``concatenate`` for rows leaving and joining.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .params import GenerationParams


def seed_for(params: GenerationParams) -> int | None:
    """The seed a sampled row uses (drawn at random when the request gave none); None when greedy."""
    if not params.do_sample:
        return None
    return params.seed if params.seed is not None else secrets.randbits(63)


@dataclass(eq=False)
class RowDecoding:
    """One row's decoding state: its parameters, its random stream, the tokens chosen so far."""

    params: GenerationParams
    seed: int | None
    generator: torch.Generator | None  # CPU generator of a sampled row (its draws are device-independent)
    tokens: list[int] = field(default_factory=list)
    finish_reason: str | None = None  # "eos" | "length" once the row has ended

    @classmethod
    def start(cls, params: GenerationParams) -> RowDecoding:
        seed = seed_for(params)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return cls(params, seed, generator)

    def push(self, token: int, eos: int) -> str | None:
        """Take the token chosen for this row (rule 4); returns the finish reason once the row ends."""
        assert self.finish_reason is None, "a finished row was given another token"
        if token == eos:
            self.finish_reason = "eos"
        else:
            self.tokens.append(token)
            if len(self.tokens) >= self.params.max_new_tokens:
                self.finish_reason = "length"
        return self.finish_reason

    def replay(self, sequence: Sequence[int], eos: int) -> RowDecoding:
        """Push a whole generated sequence (the static path), stopping where the row ends."""
        for token in sequence:
            if self.push(int(token), eos):
                break
        if self.finish_reason is None:  # the call stopped before the row did (cannot happen with HF)
            self.finish_reason = "length"
        return self


class TokenChooser:
    """Rules 1-3 for a batch of rows, as tensors on the device.

    ``rows`` in batch order; with ``beams`` > 1 each row stands for that many consecutive rows
    of the logits (beam search never samples).
    """

    def __init__(self, rows: Sequence[RowDecoding], eos: int, device: torch.device, beams: int = 1) -> None:
        self.rows = list(rows)
        self.eos = eos
        self.device = device
        self.beams = beams
        params = [r.params for r in self.rows]

        def per_row(values: list, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=device).repeat_interleave(beams)

        self.uses_penalty = any(p.repetition_penalty != 1.0 for p in params)
        self.penalty = per_row([p.repetition_penalty for p in params], torch.float32)[:, None]  # (R, 1)
        self.min_new = per_row([p.min_new_tokens for p in params], torch.long)  # (R,)
        self.uses_min = any(p.min_new_tokens > 0 for p in params)
        self.generators = [r.generator for r in self.rows if r.generator is not None]
        sampled = [i for i, r in enumerate(self.rows) if r.generator is not None]
        assert beams == 1 or not sampled, "beam search rows never sample"
        self.sampled = torch.tensor(sampled, dtype=torch.long, device=device)  # (S,)
        self.temperature = torch.tensor([params[i].temperature for i in sampled], device=device)
        self.top_p = torch.tensor([params[i].top_p for i in sampled], device=device)
        self.top_k = [params[i].top_k for i in sampled]

    def __len__(self) -> int:
        return len(self.rows)

    def filter(self, keep: Sequence[int]) -> TokenChooser:
        """The chooser of the rows ``keep`` (indices into this batch), in that order."""
        return TokenChooser([self.rows[b] for b in keep], self.eos, self.device, self.beams)

    def concatenate(self, other: TokenChooser) -> TokenChooser:
        """This batch's rows followed by ``other``'s."""
        return TokenChooser(self.rows + other.rows, self.eos, self.device, self.beams)

    def adjust(
        self, logits: torch.Tensor, seen: torch.Tensor | None, generated: torch.Tensor | int
    ) -> torch.Tensor:
        """Rules 1 and 2 on logits (R, V); ``seen`` (R, V) bool marks the tokens each row has seen
        (needed when a row has a penalty), ``generated`` the tokens each row holds ((R,) or one
        count for all). Returns new logits; the input is not changed."""
        if self.uses_penalty:
            assert seen is not None, "a repetition penalty needs the tokens each row has seen"
            penalised = torch.where(logits < 0, logits * self.penalty, logits / self.penalty)
            logits = torch.where(seen, penalised, logits)
        if self.uses_min:
            too_short = self.min_new > generated  # (R,)
            if bool(too_short.any()):
                logits = logits.clone() if not self.uses_penalty else logits
                logits[too_short, self.eos] = float("-inf")
        return logits

    def sample(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Rule 3 for the sampled rows of adjusted logits (R, V): (their row indices (S,), their
        tokens (S,)), or None when no row samples."""
        if not self.generators:
            return None
        tokens = draw(
            logits.index_select(0, self.sampled), self.temperature, self.top_p, self.top_k, self.generators
        )
        return self.sampled, tokens

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """Rule 3 for every row of adjusted logits (R, V): greedy, or the row's own draw. (R,)"""
        tokens = logits.argmax(-1)
        drawn = self.sample(logits)
        if drawn is not None:
            tokens[drawn[0]] = drawn[1]
        return tokens


def draw(
    scores: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    top_k: list[int],
    generators: list[torch.Generator],
) -> torch.Tensor:
    """One token per row of scores (S, V) by inverse CDF over its temperature/top-k/top-p filtered
    distribution. Uniforms come from per-row CPU generators: the same draws on any device and in
    any batch, so a seeded row samples the same tokens alone or mixed with others."""
    logits = scores / temperature[:, None]
    vocab = logits.shape[1]
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    ranks = torch.arange(vocab, device=scores.device)[None, :]
    k = torch.tensor([v if v > 0 else vocab for v in top_k], device=scores.device)
    keep = (ranks < k[:, None]) & ((probs.cumsum(-1) - probs) < top_p[:, None])
    probs = torch.where(keep, probs, 0.0)
    cdf = (probs / probs.sum(-1, keepdim=True)).cumsum(-1)
    u = torch.tensor([float(torch.rand((), generator=g)) for g in generators], device=scores.device)
    choice = torch.searchsorted(cdf, u[:, None].to(cdf.dtype)).clamp(max=vocab - 1)  # (S, 1)
    return order.gather(1, choice).squeeze(1)
