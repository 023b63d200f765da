"""inputtune training: adapters (and fine-tuned bases) trained and scored, and the project's own base
pretrained.

The layout follows the flow of a run. ``cli`` (``inputtune train``/``eval``) reads ``config``
(``AdapterTrainConfig``) and ``data/``; ``trainer`` is the loop, ``trainables`` what trains (an adapter
or the whole base), ``selection`` the best dev checkpoint and early stopping; ``batching`` and
``forward`` feed the model, ``evaluate`` decodes and scores, ``output`` writes the result; ``bench``
times the trainer. ``common/`` holds what both trainers share (LR schedule, checkpoint format, metrics,
autocast, device), ``pretrain/`` the second trainer (``inputtune pretrain``). ``errors`` names every
failure, ``settings`` is the one reader of environment variables.

Floors: ``training`` imports ``adapters``, never ``server``; ``pretrain/`` may import the rest of
``training``, and nothing outside it imports ``pretrain/``.
"""
