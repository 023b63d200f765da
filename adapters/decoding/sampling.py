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
from typing import Any

import torch

from ..text import IncrementalDecoder, decode_text
from .params import GenerationOutput, GenerationParams, TokenLogprob


def seed_for(params: GenerationParams) -> int | None:
    """The seed a sampled row uses (drawn at random when the request gave none); None when greedy."""
    if not params.do_sample:
        return None
    return params.seed if params.seed is not None else secrets.randbits(63)


@dataclass
class StreamToken:
    """One generated token as a stream delivers it. ``text`` is the text it adds to the output ("" while
    a character is incomplete, or while the text might still become a stop sequence); the texts of a
    row's tokens concatenate to its output text. The token that ends a row carries what is left."""

    id: int
    text: str
    logprob: TokenLogprob | None
    special: bool


@dataclass(eq=False)
class RowDecoding:
    """One row's decoding state: its parameters, its random stream, the tokens chosen so far, and
    (when it has stop sequences or streams) its text as it grows.

    Rule 4 with stop sequences: after each token, the row ends if its text now holds one of them;
    its output text ends before the first. A streamed row holds back the last (longest stop - 1)
    characters until it is sure they do not start a stop sequence.
    """

    params: GenerationParams
    seed: int | None
    generator: torch.Generator | None  # CPU generator of a sampled row (its draws are device-independent)
    tokens: list[int] = field(default_factory=list)
    finish_reason: str | None = None  # "eos" | "length" | "stop" once the row has ended
    logprobs: list[TokenLogprob] = field(default_factory=list)  # one per token, when params.logprobs is set
    text: IncrementalDecoder | None = None  # the text as it grows (stop sequences, streams)
    stream: bool = False  # keep StreamToken events for a consumer (``take_events``)
    special_ids: frozenset[int] = frozenset()
    _events: list[StreamToken] = field(default_factory=list)
    _sent: int = 0  # characters of text already handed out in events
    _end: int | None = None  # where the output text ends (before a stop sequence)

    @classmethod
    def start(cls, params: GenerationParams, tokenizer: Any = None, stream: bool = False) -> RowDecoding:
        seed = seed_for(params)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        row = cls(params, seed, generator, stream=stream)
        if params.stop or stream:
            assert tokenizer is not None, "stop sequences and streams need the tokenizer"
            row.text = IncrementalDecoder(tokenizer)
            row.special_ids = frozenset(tokenizer.all_special_ids)
        return row

    def push(self, token: int, eos: int, logprob: TokenLogprob | None = None) -> str | None:
        """Take the token chosen for this row (rule 4); returns the finish reason once the row ends."""
        assert self.finish_reason is None, "a finished row was given another token"
        if token == eos:
            self.finish_reason = "eos"
        else:
            self.tokens.append(token)
            if logprob is not None:
                self.logprobs.append(logprob)
            if self.text is not None:
                before = len(self.text.text)
                self.text.add(token)
                if self.params.stop and self._stop_found(before):
                    self.finish_reason = "stop"
            if self.finish_reason is None and len(self.tokens) >= self.params.max_new_tokens:
                self.finish_reason = "length"
        if self.text is not None and self.finish_reason in ("eos", "length"):
            self.text.finish()  # a character the last tokens left incomplete
        if self.stream:
            self._emit(token, eos, logprob)
        return self.finish_reason

    def _stop_found(self, before: int) -> bool:
        """Whether the text, grown from ``before`` characters, now holds a stop sequence; marks the end."""
        assert self.text is not None
        text = self.text.text
        found = [
            i for stop in self.params.stop if (i := text.find(stop, max(0, before - len(stop) + 1))) != -1
        ]
        if found:
            self._end = min(found)
        return bool(found)

    def _emit(self, token: int, eos: int, logprob: TokenLogprob | None) -> None:
        assert self.text is not None
        if self.finish_reason is None:
            hold = max((len(s) for s in self.params.stop), default=1) - 1
            safe = len(self.text.text) - hold
        else:
            safe = self._end if self._end is not None else len(self.text.text)
        piece = self.text.text[self._sent : safe] if safe > self._sent else ""
        self._sent = max(self._sent, safe)
        self._events.append(StreamToken(token, piece, logprob, token == eos or token in self.special_ids))

    def take_events(self) -> list[StreamToken]:
        """The stream events since the last call (a streamed row only)."""
        events, self._events = self._events, []
        return events

    def replay(
        self, sequence: Sequence[int], eos: int, logprobs: Sequence[TokenLogprob | None] = ()
    ) -> RowDecoding:
        """Push a whole generated sequence (the static path), stopping where the row ends."""
        for step, token in enumerate(sequence):
            if self.push(int(token), eos, logprobs[step] if step < len(logprobs) else None):
                break
        if self.finish_reason is None:  # the call stopped before the row did (cannot happen with HF)
            self.finish_reason = "length"
        return self

    def output(self, tokenizer: Any, input_tokens: int) -> GenerationOutput:
        """The finished row's result."""
        assert self.finish_reason is not None, "the row has not finished"
        if self.text is not None:
            text = self.text.text if self._end is None else self.text.text[: self._end]
        else:
            text = decode_text(tokenizer, self.tokens)
        logprobs = self.logprobs if self.params.logprobs is not None else None
        return GenerationOutput(
            text, list(self.tokens), input_tokens, len(self.tokens), self.finish_reason, self.seed, logprobs
        )


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
        self.logprob_rows = [p.logprobs for p in params]  # per row: None, or the alternatives it wants
        self.wants_logprobs = any(k is not None for k in self.logprob_rows)
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

    def logprobs(self, logits: torch.Tensor, tokens: torch.Tensor) -> list[TokenLogprob | None]:
        """Each row's chosen token's log-probability under its adjusted distribution (after rules 1
        and 2, before temperature and top-k/top-p), with its most likely alternatives; None for the
        rows that did not ask. logits (R, V), tokens (R,)."""
        logp = torch.log_softmax(logits.float(), dim=-1)  # (R, V)
        chosen = logp.gather(1, tokens[:, None]).squeeze(1).tolist()
        k = max((v for v in self.logprob_rows if v is not None), default=0)
        values, ids = logp.topk(k, dim=-1) if k else (logp[:, :0], tokens[:, None][:, :0])
        top_lp, top_ids = values.tolist(), ids.tolist()
        return [
            None
            if want is None
            else TokenLogprob(chosen[b], list(zip(top_ids[b][:want], top_lp[b][:want], strict=True)))
            for b, want in enumerate(self.logprob_rows)
        ]


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
    k = torch.tensor([min(v, vocab) if v > 0 else vocab for v in top_k], device=scores.device)
    keep = (ranks < k[:, None]) & ((probs.cumsum(-1) - probs) < top_p[:, None])
    probs = torch.where(keep, probs, 0.0)
    cdf = (probs / probs.sum(-1, keepdim=True)).cumsum(-1)
    u = torch.tensor([float(torch.rand((), generator=g)) for g in generators], device=scores.device)
    choice = torch.searchsorted(cdf, u[:, None].to(cdf.dtype)).clamp(max=vocab - 1)  # (S, 1)
    return order.gather(1, choice).squeeze(1)
