"""Training settings from the environment: one pydantic-settings class; a field ``name`` comes from
``INPUTTUNE_<NAME>``. This is the only place training reads environment variables.

Readers import it where they read a setting (``training.data.core.resolve_data_dir``), not at module
top: the training modules themselves import without pydantic (the offline training machine lacks it;
``tests/training/test_train_cli.py`` checks the imports).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "INPUTTUNE_"


class TrainingSettings(BaseSettings):
    """What training takes from the environment. Command-line options win over it."""

    # An empty variable counts as unset, as `INPUTTUNE_DATA_DIR= inputtune train ...` means.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_ignore_empty=True)

    data_dir: Path | None = Field(
        None, description="The shared data folder (e2e/, dart/, ...); --data-dir wins over it"
    )
