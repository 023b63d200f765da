"""The static path: one ``transformers`` ``generate`` call runs a group of rows to its end.

Shapes: B rows of the call, R = B times beams, S encoder positions, T' prompt + input positions,
D width, V vocabulary.

Each row follows the one per-row policy (``sampling.py``) through a logits processor: HF's
``generate`` only runs the model and keeps the beams, the processor decides every row's token.
Beam search, decoder-only bases and ``--scheduling static`` run here; so does the naive baseline,
one row at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.modeling_outputs import BaseModelOutput

from .params import GenerationOutput, GenerationParams, TokenLogprob
from .sampling import RowDecoding, TokenChooser


class PolicyProcessor(LogitsProcessor):
    """Applies the rows' policy inside HF's ``generate``.

    Sampled rows get the token their own stream draws, forced by leaving only it possible. A greedy
    or sampled row that holds its own ``max_new_tokens`` is forced to EOS (the call runs until its
    longest row's limit; the forced EOS is not returned).
    """

    def __init__(self, chooser: TokenChooser, max_new: list[int]) -> None:
        self.chooser = chooser
        self.max_new = max_new
        self.start_len: int | None = None
        self.logprobs: list[list[TokenLogprob | None]] = []  # per step, per row (rows that asked)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.start_len is None:
            self.start_len = input_ids.shape[1]
        step = input_ids.shape[1] - self.start_len  # tokens generated so far
        seen = None
        if self.chooser.uses_penalty:
            seen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, input_ids, True)  # (R, V)
        adjusted = self.chooser.adjust(scores, seen, step)
        adjusted = adjusted.clone() if adjusted is scores else adjusted
        drawn = self.chooser.sample(adjusted)
        if self.chooser.wants_logprobs:  # the token each row gets: its draw, or greedy
            chosen = adjusted.argmax(-1)
            if drawn is not None:
                chosen[drawn[0]] = drawn[1]
            self.logprobs.append(self.chooser.logprobs(adjusted, chosen))
        if drawn is not None:
            rows, tokens = drawn
            adjusted[rows] = float("-inf")
            adjusted[rows, tokens] = 0.0
        if self.chooser.beams == 1:
            done = [i for i, m in enumerate(self.max_new) if step >= m]
            if done:
                index = torch.tensor(done, device=adjusted.device)
                adjusted[index] = float("-inf")
                adjusted[index, self.chooser.eos] = 0.0
        return adjusted  # type: ignore[return-value]


def generate_rows(
    model: Any,
    tokenizer: Any,
    params: Sequence[GenerationParams],
    input_tokens: Sequence[int],
    attention_mask: torch.Tensor,
    *,
    encoder_hidden: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    decodings: Sequence[RowDecoding] | None = None,
) -> list[GenerationOutput]:
    """Run one ``generate`` call for rows that share a group key (``GenerationParams.group_key``).

    model/tokenizer: the frozen base's. Give ``encoder_hidden`` (B, S, D) for an encoder-decoder
    base whose encoder already ran, or ``inputs_embeds`` (B, T', D) (the decoder-only input, or an
    encoder-decoder's encoder input); ``attention_mask`` is their mask. ``input_tokens`` counts each
    row's source tokens (for the output's details). ``decodings``: the rows' decoding states when the
    caller keeps them (a streamed row's events come all at the end on this path).
    """
    num_beams = params[0].num_beams
    rows = list(decodings) if decodings is not None else [RowDecoding.start(p, tokenizer) for p in params]
    eos = tokenizer.eos_token_id
    chooser = TokenChooser(rows, eos, attention_mask.device, beams=num_beams)
    config = GenerationConfig(
        max_new_tokens=max(p.max_new_tokens for p in params),
        num_beams=num_beams,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos,
        decoder_start_token_id=getattr(model.config, "decoder_start_token_id", None),
    )
    processor = PolicyProcessor(chooser, [p.max_new_tokens for p in params])
    kwargs = {"generation_config": config, "logits_processor": LogitsProcessorList([processor])}
    if encoder_hidden is not None:
        out = model.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden),
            attention_mask=attention_mask,
            **kwargs,
        )
    else:
        out = model.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)
    sequences = out[:, 1:] if model.config.is_encoder_decoder else out  # drop the decoder start token
    outputs = []
    for b, (row, sequence, count) in enumerate(zip(rows, sequences.tolist(), input_tokens, strict=True)):
        row.replay(sequence, eos, [step[b] for step in processor.logprobs])
        outputs.append(row.output(tokenizer, count))
    return outputs
