"""The embedded default, and the one rule that says which model and adapters a command uses.

The default is the shipped demo (a small pretrained T5 and its adapters, see demo/README.md): the
``demo/`` folder of a checkout, installed with the package as ``inputtune_demo`` (``pip install .``
copies it; an editable install maps it to the folder). Where neither is there, the default is a
deterministic tiny random T5 with three random adapters, built on first use in the cache folder
(``INPUTTUNE_CACHE``) and logged as such; its outputs are random bytes: it shows the plumbing, not
quality.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

DEMO_PACKAGE = "inputtune_demo"
PLACEHOLDER_VERSION = "placeholder-v1"
PLACEHOLDER_ADAPTERS = ("random-1", "random-2", "random-3")


def _installed_demo() -> Path:
    """Where the demo package lives (installed or mapped to the checkout's demo/), else demo/."""
    spec = importlib.util.find_spec(DEMO_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "demo"


DEMO_DIR = _installed_demo()


def default_model_and_adapters(cache: Path) -> tuple[Path, Path]:
    """(model folder, adapter folder) of the embedded default, creating the placeholder if needed."""
    if (DEMO_DIR / "base" / "config.json").is_file():
        return DEMO_DIR / "base", DEMO_DIR / "adapters"
    return ensure_placeholder(cache / PLACEHOLDER_VERSION)


def resolve_model(model: str | None, adapter_dir: Path | None, cache: Path) -> tuple[str, Path | None]:
    """(base model, adapter folder) a command uses: the given ones; with no model, the embedded
    default and its adapters (an explicit adapter folder still wins). A model without an adapter
    folder has none (None)."""
    if model is None:
        default_model, default_adapters = default_model_and_adapters(cache)
        return str(default_model), adapter_dir or default_adapters
    return model, adapter_dir


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
