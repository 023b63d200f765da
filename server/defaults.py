"""The embedded default: what `inputtune serve` / `generate` use when no model is named.

The shipped demo in ``demo/`` (a small pretrained T5 and its adapters, see demo/README.md).
Where a copy of the package lacks that folder (an install without the repository), the default
is a deterministic tiny random T5 with three random adapters, built on first use in a cache
folder and logged as such; its outputs are random bytes: it shows the plumbing, not quality.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "demo"
PLACEHOLDER_VERSION = "placeholder-v1"
PLACEHOLDER_ADAPTERS = ("random-1", "random-2", "random-3")


def cache_dir() -> Path:
    """``$INPUTTUNE_CACHE``, else ``$XDG_CACHE_HOME/inputtune``, else ``~/.cache/inputtune``."""
    if os.environ.get("INPUTTUNE_CACHE"):
        return Path(os.environ["INPUTTUNE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "inputtune"


def default_model_and_adapters() -> tuple[Path, Path]:
    """(model folder, adapter folder) of the embedded default, creating the placeholder if needed."""
    if (DEMO_DIR / "base" / "config.json").is_file():
        return DEMO_DIR / "base", DEMO_DIR / "adapters"
    return ensure_placeholder(cache_dir() / PLACEHOLDER_VERSION)


def ensure_placeholder(folder: Path) -> tuple[Path, Path]:
    """Build the tiny random placeholder base and its adapters once (deterministic, ~1 s).

    Built in a temporary sibling folder and renamed into place, so concurrent first runs
    never see half a model.
    """
    if not (folder / "base" / "config.json").is_file():
        from adapters import AdapterConfig, random_adapter, save_adapter
        from adapters.config import Kind
        from adapters.testing import build_random_base, save_base

        log.info("building the placeholder random base in %s", folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        base = build_random_base("t5", "tiny", seed=0, init_scale=8.0)
        save_base(base, tmp / "base")
        kinds: tuple[Kind, ...] = ("input-tuning", "prompt-tuning", "input-tuning")
        for seed, (name, kind) in enumerate(zip(PLACEHOLDER_ADAPTERS, kinds, strict=True), start=1):
            config = AdapterConfig(
                kind,
                base.d_model,
                prompt_length=4 * seed,
                base_model=base.name,
                base_fingerprint=base.fingerprint,
            )
            weights = random_adapter(config, seed=seed, scale=0.5)
            weights.metadata["note"] = "random placeholder adapter"
            save_adapter(weights, tmp / "adapters" / f"{name}.safetensors")
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished first; its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    return folder / "base", folder / "adapters"
