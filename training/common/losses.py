"""The label value the losses skip, for every batch builder and loss of both trainers."""

from __future__ import annotations

# transformers' convention, which T5's own loss and F.cross_entropy's default also use: padding, and the
# source positions of decoder-only rows, carry it and add nothing to the loss.
IGNORE_INDEX = -100
