"""The embedded demo, installed with inputtune as the package ``inputtune_demo``: a small T5 base
pretrained by ``inputtune pretrain`` (``base/``) and adapters trained on it (``adapters/``).
See README.md here; ``server/demo.py`` resolves it."""
