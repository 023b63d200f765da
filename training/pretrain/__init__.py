"""Pretraining: the project's own small T5 base, trained from the shared data (``inputtune pretrain``).

A second trainer beside the adapter trainer, sharing ``training.common`` (schedule, checkpoints,
metrics, autocast) and ``training.data``; the adapter trainer never imports this package.
``cli`` is the command; ``config`` and ``presets/`` the recipe; ``tokenizer``, ``books``, ``objectives``
and ``mixture`` the data; ``model``, ``budget`` and ``loop`` the training; ``eval`` and ``gate`` the
verdict; ``bench`` times the parts (``inputtune bench pretrain``).
"""
