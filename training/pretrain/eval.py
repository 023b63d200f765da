"""The gate a pretrained base must pass: its own scores on held-out data of its mixture tasks, and
proof that its outputs depend on its inputs.

- Multi30k fr->en test_2016_flickr BLEU and WebNLG dev BLEU (greedy `model.generate`, sacrebleu,
  all references of an input).
- Prefix-LM continuations of held-out English (FLORES devtest sentences, cut in half): shown, not scored.
- Input dependence: the share of distinct outputs over different French sentences, and the "input
  gain": the mean per-token loss of the fr->en references when each is paired with a *wrong* source
  (the next sentence's) minus with its own source. A base that ignores its encoder scores ~0 nats.
- Encoder collapse: the mean cosine similarity between the encoder's output vectors at two different
  positions of one input. Near 1 the encoder says the same thing at every position (a few huge
  residual dimensions swamp the rest after the final norm), so cross-attention carries almost
  nothing about the input and a prompt or an input adapter has nothing to steer. The first CPU
  demo base ended at 0.99 (its input gain was still 0.49 nats).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from training.common.losses import IGNORE_INDEX
from training.data import load_task, resolve_data_dir
from training.data.core import read_lines
from training.pretrain.config import PretrainDataConfig, PretrainEvalConfig, PretrainGateConfig

log = logging.getLogger(__name__)


def _encode(
    tokenizer: Any, texts: Sequence[str], max_length: int, device: torch.device
) -> dict[str, torch.Tensor]:
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {key: value.to(device) for key, value in batch.items() if key in ("input_ids", "attention_mask")}


@torch.inference_mode()
def greedy_generate(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int,
    max_new_tokens: int,
    max_source_length: int = 256,
) -> list[str]:
    """Greedy outputs of plain `model.generate`, in input order (batched by input length)."""
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    outputs: list[str] = [""] * len(texts)
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        batch = _encode(tokenizer, [texts[i] for i in indices], max_source_length, device)
        generated = model.generate(**batch, max_new_tokens=max_new_tokens, num_beams=1, do_sample=False)
        for i, text in zip(indices, tokenizer.batch_decode(generated, skip_special_tokens=True), strict=True):
            outputs[i] = text.strip()
    return outputs


@torch.inference_mode()
def reference_loss(
    model: Any,
    tokenizer: Any,
    sources: Sequence[str],
    targets: Sequence[str],
    *,
    batch_size: int,
) -> float:
    """Mean per-token cross-entropy (nats) of `targets` given `sources`, teacher-forced."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(sources), batch_size):
        batch = _encode(tokenizer, sources[start : start + batch_size], 256, device)
        labels = _encode(tokenizer, targets[start : start + batch_size], 256, device)
        ids = labels["input_ids"].masked_fill(labels["attention_mask"] == 0, IGNORE_INDEX)
        logits = model(**batch, labels=ids).logits.float()  # (B, Lt, V)
        losses = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), ids, ignore_index=IGNORE_INDEX, reduction="sum"
        )
        total += float(losses)
        count += int((ids != IGNORE_INDEX).sum())
    return total / max(1, count)


@torch.inference_mode()
def encoder_position_cosine(
    model: Any, tokenizer: Any, sources: Sequence[str], *, batch_size: int, max_source_length: int = 256
) -> float:
    """Mean cosine similarity between the encoder outputs at two different (non-padding) positions
    of the same input, averaged over inputs: ~0.1-0.5 for an encoder that reads its input, ~1 for
    one that has collapsed to one vector per input."""
    device = next(model.parameters()).device
    values = []
    for start in range(0, len(sources), batch_size):
        batch = _encode(tokenizer, sources[start : start + batch_size], max_source_length, device)
        hidden = model.get_encoder()(**batch).last_hidden_state.float()  # (B, T, D)
        unit = torch.nn.functional.normalize(hidden, dim=-1)
        mask = batch["attention_mask"].float()  # (B, T)
        sims = unit @ unit.transpose(1, 2) * mask[:, :, None] * mask[:, None, :]  # (B, T, T)
        n = mask.sum(1)
        values += ((sims.sum((1, 2)) - n) / (n * n - n).clamp(min=1)).tolist()
    return sum(values) / max(1, len(values))


def evaluate_base(
    model: Any,
    tokenizer: Any,
    data: PretrainDataConfig,
    config: PretrainEvalConfig,
    data_dir: str | Path | None = None,
) -> dict[str, Any]:
    """All gate scores and samples of a base model (see the module docstring)."""
    # Here, not at the top: sacrebleu is a training extra, and `inputtune --help` imports every command.
    from training.common.metrics import corpus_bleu

    started = time.perf_counter()
    fr_prefix, d2t_prefix = data.prefixes["fr-en"], data.prefixes["webnlg"]
    generate_kwargs = dict(
        batch_size=config.batch_size,
        max_new_tokens=config.max_new_tokens,
        max_source_length=data.max_source_length,
    )
    fr_items = load_task("fr-en", "test", data_dir, limit=config.fr_en_limit).items
    fr_sources = [fr_prefix + item.source for item in fr_items]
    fr_outputs = greedy_generate(model, tokenizer, fr_sources, **generate_kwargs)
    web_items = load_task("webnlg", "dev", data_dir, limit=config.webnlg_limit).items
    web_outputs = greedy_generate(
        model, tokenizer, [d2t_prefix + item.source for item in web_items], **generate_kwargs
    )

    count = min(config.distinct_count, len(fr_outputs))
    distinct = len(set(fr_outputs[:count])) / max(1, count)
    most_common = max((fr_outputs[:count].count(o) for o in set(fr_outputs[:count])), default=0)

    gain_n = min(config.gain_count, len(fr_items))
    targets = [item.references[0] for item in fr_items[:gain_n]]
    right = reference_loss(model, tokenizer, fr_sources[:gain_n], targets, batch_size=config.batch_size)
    wrong_sources = fr_sources[1:gain_n] + fr_sources[:1]  # each reference paired with the next source
    wrong = reference_loss(model, tokenizer, wrong_sources, targets, batch_size=config.batch_size)

    collapse = encoder_position_cosine(
        model,
        tokenizer,
        fr_sources[:gain_n],
        batch_size=config.batch_size,
        max_source_length=data.max_source_length,
    )

    english = read_lines(resolve_data_dir(data_dir) / "flores101_devtest" / "eng.devtest")[
        : config.num_samples
    ]
    halves = [" ".join(line.split()[: max(1, len(line.split()) // 2)]) for line in english]
    continuations = greedy_generate(model, tokenizer, halves, **generate_kwargs)

    return {
        "fr_en_test_bleu": round(corpus_bleu(fr_outputs, [i.references for i in fr_items]), 2),
        "fr_en_test_count": len(fr_items),
        "webnlg_dev_bleu": round(corpus_bleu(web_outputs, [i.references for i in web_items]), 2),
        "webnlg_dev_count": len(web_items),
        "distinct_outputs": round(distinct, 4),
        "distinct_count": count,
        "most_common_output_share": round(most_common / max(1, count), 4),
        "fr_en_loss_right_source": round(right, 4),
        "fr_en_loss_wrong_source": round(wrong, 4),
        "input_gain_nats": round(wrong - right, 4),
        "encoder_position_cosine": round(collapse, 4),
        "samples": {
            "fr-en": [
                {"input": i.source, "output": o, "reference": i.references[0]}
                for i, o in zip(fr_items[: config.num_samples], fr_outputs, strict=False)
            ],
            "webnlg": [
                {"input": i.source, "output": o, "reference": i.references[0]}
                for i, o in zip(web_items[: config.num_samples], web_outputs, strict=False)
            ],
            "continuation": [{"prefix": h, "output": o} for h, o in zip(halves, continuations, strict=True)],
        },
        "eval_s": round(time.perf_counter() - started, 2),
    }


def gate_verdict(scores: dict[str, Any], gate: PretrainGateConfig) -> tuple[bool, list[str]]:
    """(passed, reasons it failed). A threshold of 0 turns its check off."""
    checks = [
        ("distinct_outputs", gate.min_distinct, "distinct outputs over different French inputs"),
        ("input_gain_nats", gate.min_input_gain, "input gain (loss with a wrong source minus the right one)"),
        ("fr_en_test_bleu", gate.min_fr_en_bleu, "Multi30k fr->en test BLEU"),
        ("webnlg_dev_bleu", gate.min_webnlg_bleu, "WebNLG dev BLEU"),
    ]
    reasons = [
        f"{what} is {scores[key]} < {minimum}"
        for key, minimum, what in checks
        if minimum > 0 and scores[key] < minimum
    ]
    collapse = scores.get("encoder_position_cosine")
    if gate.max_encoder_cosine < 1 and collapse is not None and collapse > gate.max_encoder_cosine:
        reasons.append(
            f"the encoder has collapsed: its outputs at different positions have mean cosine {collapse} > "
            f"{gate.max_encoder_cosine}"
        )
    return not reasons, reasons
