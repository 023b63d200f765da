"""What one row asks of decoding (``GenerationParams``) and what it gets back (``GenerationOutput``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InvalidParametersError

MAX_SEED = 2**63 - 1
MAX_STOP_SEQUENCES = 16
MAX_STOP_CHARS = 256
MAX_LOGPROBS = 20
# numeric sanity: beyond these, logits divided by the temperature or the penalty overflow to inf/NaN
TEMPERATURE_RANGE = (1e-3, 1e3)
MAX_TOP_K = 2**31 - 1  # any k at least the vocabulary keeps every token
PENALTY_RANGE = (1e-2, 1e2)


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class GenerationParams:
    """Decoding settings of one request (names as text-generation servers use them).

    Greedy by default. ``do_sample`` samples with ``temperature``/``top_k``/``top_p`` from a
    per-row random stream seeded by ``seed``, so a seeded row samples the same tokens alone
    or in any batch. ``num_beams`` > 1 is beam search (not combinable with sampling).
    """

    max_new_tokens: int = field(default=64, metadata=_help("tokens to generate at most"))
    min_new_tokens: int = field(default=0, metadata=_help("tokens to generate at least"))
    num_beams: int = field(default=1, metadata=_help("beam search width (1 = greedy or sampling)"))
    do_sample: bool = field(default=False, metadata=_help("sample instead of greedy decoding"))
    temperature: float = field(default=1.0, metadata=_help("sampling temperature (> 0)"))
    top_p: float = field(default=1.0, metadata=_help("nucleus sampling mass, in (0, 1]"))
    top_k: int = field(default=0, metadata=_help("sample among the k most likely tokens (0 = off)"))
    repetition_penalty: float = field(default=1.0, metadata=_help("> 1 discourages repeating tokens"))
    seed: int | None = field(default=None, metadata=_help("seed of the row's sampling stream"))
    stop: tuple[str, ...] = field(
        default=(),
        metadata=_help("stop sequences: the row ends where its text first holds one (not returned)"),
    )
    logprobs: int | None = field(
        default=None,
        metadata=_help("return each token's log-probability and this many most likely alternatives"),
    )

    def __post_init__(self) -> None:
        checks = [
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (
                0 <= self.min_new_tokens <= self.max_new_tokens,
                f"min_new_tokens must be in [0, max_new_tokens={self.max_new_tokens}], "
                f"got {self.min_new_tokens}",
            ),
            (self.num_beams >= 1, f"num_beams must be >= 1, got {self.num_beams}"),
            (
                TEMPERATURE_RANGE[0] <= self.temperature <= TEMPERATURE_RANGE[1],
                f"temperature must be > 0 (in [{TEMPERATURE_RANGE[0]:g}, {TEMPERATURE_RANGE[1]:g}]), "
                f"got {self.temperature}",
            ),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (0 <= self.top_k <= MAX_TOP_K, f"top_k must be in [0, 2^31) (0 = off), got {self.top_k}"),
            (
                PENALTY_RANGE[0] <= self.repetition_penalty <= PENALTY_RANGE[1],
                f"repetition_penalty must be in [{PENALTY_RANGE[0]:g}, {PENALTY_RANGE[1]:g}], "
                f"got {self.repetition_penalty}",
            ),
            (self.seed is None or 0 <= self.seed <= MAX_SEED, f"seed must be in [0, 2^63), got {self.seed}"),
            (
                not (self.do_sample and self.num_beams > 1),
                "do_sample cannot be combined with num_beams > 1: use sampling or beam search",
            ),
            (
                isinstance(self.stop, tuple) and len(self.stop) <= MAX_STOP_SEQUENCES,
                f"stop takes at most {MAX_STOP_SEQUENCES} sequences",
            ),
            (
                all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in self.stop),
                f"each stop sequence must be 1 to {MAX_STOP_CHARS} characters",
            ),
            (
                self.logprobs is None or 0 <= self.logprobs <= MAX_LOGPROBS,
                f"logprobs must be in [0, {MAX_LOGPROBS}], got {self.logprobs}",
            ),
            (
                self.num_beams == 1 or (self.logprobs is None and not self.stop),
                "beam search returns neither logprobs nor stops at stop sequences: use num_beams=1",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidParametersError(message)

    def group_key(self) -> tuple[int, ...]:
        """Rows whose keys are equal can share one decoder ``generate`` call.

        Greedy and sampled rows all share one call (per-row control); beam search needs the same
        beam count and length limit across the call.
        """
        if self.num_beams == 1:
            return (1,)
        return (self.num_beams, self.max_new_tokens)


@dataclass
class TokenLogprob:
    """A generated token's log-probability and the row's most likely alternatives (id, logprob)."""

    logprob: float
    top: list[tuple[int, float]]


@dataclass
class GenerationOutput:
    """One row's result. ``finish_reason``: "eos" (the model ended it), "length" (max_new_tokens)
    or "stop" (a stop sequence; ``text`` ends before it). ``logprobs``: one per token, when asked."""

    text: str
    token_ids: list[int]
    input_tokens: int
    generated_tokens: int
    finish_reason: str
    seed: int | None = None
    logprobs: list[TokenLogprob] | None = None
