"""Generation parameters, and the per-row logits control that lets rows with different
parameters share one ``generate`` call while each row gets exactly what it gets alone.

Shapes: R rows of the call (batch rows times beams), V vocabulary.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor

MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class GenerationParams:
    """Decoding settings of one request (names as text-generation servers use them).

    Greedy by default. ``do_sample`` samples with ``temperature``/``top_k``/``top_p`` from a
    per-row random stream seeded by ``seed``, so a seeded row samples the same tokens alone
    or in any batch. ``num_beams`` > 1 is beam search (not combinable with sampling).
    """

    max_new_tokens: int = 64
    min_new_tokens: int = 0
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (
                0 <= self.min_new_tokens <= self.max_new_tokens,
                f"min_new_tokens must be in [0, max_new_tokens={self.max_new_tokens}], "
                f"got {self.min_new_tokens}",
            ),
            (self.num_beams >= 1, f"num_beams must be >= 1, got {self.num_beams}"),
            (self.temperature > 0, f"temperature must be > 0, got {self.temperature}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (self.top_k >= 0, f"top_k must be >= 0 (0 = off), got {self.top_k}"),
            (self.repetition_penalty > 0, f"repetition_penalty must be > 0, got {self.repetition_penalty}"),
            (self.seed is None or 0 <= self.seed <= MAX_SEED, f"seed must be in [0, 2^63), got {self.seed}"),
            (
                not (self.do_sample and self.num_beams > 1),
                "do_sample cannot be combined with num_beams > 1: use sampling or beam search",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def group_key(self) -> tuple[int, ...]:
        """Rows whose keys are equal can share one decoder ``generate`` call.

        Greedy and sampled rows all share one call (per-row control below); beam search
        needs the same beam count and length limit across the call.
        """
        if self.num_beams == 1:
            return (1,)
        return (self.num_beams, self.max_new_tokens)


@dataclass
class GenerationOutput:
    """One row's result."""

    text: str
    token_ids: list[int]
    input_tokens: int
    generated_tokens: int
    finish_reason: str  # "eos" or "length"
    seed: int | None = None
    extra: dict = field(default_factory=dict)


class RowControl(LogitsProcessor):
    """Applies each row's own repetition penalty, min/max length and sampling.

    HF's generate runs greedy (or beam search); for sampled rows this processor draws the
    token from the row's own generator and leaves only that token possible, so the draw
    depends on the row alone, never on its neighbours in the batch. A row that reaches its
    own ``max_new_tokens`` is forced to end (its extra EOS is not returned).
    """

    def __init__(
        self, params: list[GenerationParams], num_beams: int, eos_token_id: int, device: torch.device
    ):
        self.params = params
        self.num_beams = num_beams
        self.eos = eos_token_id
        expand = num_beams

        def per_row(values, dtype):
            return torch.tensor(values, dtype=dtype, device=device).repeat_interleave(expand)

        self.max_new = [p.max_new_tokens for p in params]
        self.min_new = per_row([p.min_new_tokens for p in params], torch.long)
        self.penalty = per_row([p.repetition_penalty for p in params], torch.float32)
        self.use_penalty = any(p.repetition_penalty != 1.0 for p in params)
        self.seeds = [seed_for(p) for p in params]
        sample_rows = [i for i, p in enumerate(params) if p.do_sample]
        self.sample_rows = torch.tensor(sample_rows, dtype=torch.long, device=device)
        self.generators = [
            torch.Generator().manual_seed(s) for s in self.seeds if s is not None
        ]  # = sample_rows
        self.temperature = torch.tensor([params[i].temperature for i in sample_rows], device=device)
        self.top_p = torch.tensor([params[i].top_p for i in sample_rows], device=device)
        self.top_k = [params[i].top_k for i in sample_rows]
        self.start_len: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.start_len is None:
            self.start_len = input_ids.shape[1]
        step = input_ids.shape[1] - self.start_len  # tokens generated so far
        scores = scores.clone()  # type: ignore[assignment]  # (R, V)
        if self.use_penalty:
            seen = scores.gather(1, input_ids)
            penalty = self.penalty[:, None]
            scores.scatter_(1, input_ids, torch.where(seen < 0, seen * penalty, seen / penalty))
        too_short = self.min_new > step  # (R,)
        if bool(too_short.any()):
            scores[too_short, self.eos] = float("-inf")
        if self.sample_rows.numel():
            self._sample(scores)
        if self.num_beams == 1:
            done = [i for i, m in enumerate(self.max_new) if step >= m]
            if done:
                rows = torch.tensor(done, device=scores.device)
                scores[rows] = float("-inf")
                scores[rows, self.eos] = 0.0
        return scores

    def _sample(self, scores: torch.Tensor) -> None:
        tokens = draw(
            scores.index_select(0, self.sample_rows),
            self.temperature,
            self.top_p,
            self.top_k,
            self.generators,
        )
        scores[self.sample_rows] = float("-inf")
        scores[self.sample_rows, tokens] = 0.0


def seed_for(params: GenerationParams) -> int | None:
    """The seed a sampled row uses (drawn at random when the request gave none)."""
    if not params.do_sample:
        return None
    return params.seed if params.seed is not None else secrets.randbits(63)


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
