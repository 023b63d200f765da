"""Decoding: what a row asks for, the one per-row policy, and the paths that run it.

- ``params``: ``GenerationParams`` (a row's request) and ``GenerationOutput`` (its result);
- ``sampling``: the one per-row policy (penalty, min length, greedy or seeded sampling, end);
- ``static``: one ``transformers`` ``generate`` call per group of rows (beams, GPT-2, the baseline);
- ``t5_step`` and ``continuous``: continuous batching for T5/mT5 bases.
"""

from .continuous import ContinuousBatch, continuous_supported
from .params import GenerationOutput, GenerationParams

__all__ = ["ContinuousBatch", "GenerationOutput", "GenerationParams", "continuous_supported"]
