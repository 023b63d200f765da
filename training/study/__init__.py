"""The Input-Tuning study on a base of our own (docs/study.md): PT / IT / FT per task, familiarity vs
relative performance, and what the adapter changes. ``python -m training.study`` regenerates it."""
