"""What an input adapter changes: per input token, the relative size of its correction.

For a token embedding x (the frozen base's input embedding), the input adapter outputs
x + Δ(x) with Δ(x) = W2·act(W1·x + b1) + b2 (``adapters.ops.mlp_delta``); the change is
``‖Δ(x)‖ / ‖x‖``. ``inputtune adapters activation`` prints it per token of an input, most-changed
first; the study (docs/study.md, part 3) relates it to how often the token occurs in the base's corpus.

Shapes: T tokens, D model width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adapters import AdapterWeights, BaseModel, InvalidParametersError
from adapters.ops import mlp_delta


def relative_change(embeddings: torch.Tensor, weights: AdapterWeights) -> torch.Tensor:
    """(T, D) input embeddings -> (T,) ``‖Δ(x)‖ / ‖x‖`` of the adapter's MLP (float32).

    Raises InvalidParametersError for a prompt-tuning adapter (no MLP: it changes no input token).
    """
    if not weights.config.has_mlp:
        raise InvalidParametersError(
            "this is a prompt-tuning adapter: it has no input MLP, so it changes no input token "
            "(only an input-tuning adapter has a per-token change)"
        )
    x = embeddings.float()  # (T, D)
    t = {k: v.float().to(x.device) for k, v in weights.tensors.items()}
    delta = mlp_delta(x, t["mlp.w1"], t["mlp.b1"], t["mlp.w2"], t["mlp.b2"], weights.config.activation)
    return delta.norm(dim=-1) / x.norm(dim=-1).clamp_min(torch.finfo(torch.float32).tiny)


@dataclass(frozen=True)
class TokenChange:
    position: int  # 0-based position in the input's tokens
    token_id: int
    token: str
    change: float  # ‖Δ(x)‖ / ‖x‖


def token_changes(base: BaseModel, weights: AdapterWeights, text: str) -> list[TokenChange]:
    """Every token of ``text`` (laid out as the server lays it out, EOS included for T5) with the
    adapter's relative change to its embedding, in input order."""
    from adapters import encode_sources

    ids = encode_sources(base.tokenizer, [text], base.family == "encoder-decoder")[0]
    if not ids:
        raise InvalidParametersError("the input has no tokens: pass some text")
    embedding = base.model.get_input_embeddings()
    with torch.no_grad():
        x = embedding(torch.tensor(ids, device=base.device))  # (T, D)
        changes = relative_change(x, weights).tolist()
    tokens = base.tokenizer.convert_ids_to_tokens(ids)
    return [
        TokenChange(i, int(t), str(tok), float(c))
        for i, (t, tok, c) in enumerate(zip(ids, tokens, changes, strict=True))
    ]
