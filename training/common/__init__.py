"""What the adapter trainer and pretraining share, each rule once: the learning-rate schedule
(``schedule``), the checkpoint format (``checkpoint``), the metrics (``metrics``), the autocast policy
(``precision``), the ignored label (``losses``) and the device of a run (``device``).

Nothing here imports the rest of ``training`` but ``training.errors``: both trainers build on it.
"""
