"""Server settings: one pydantic-settings class; every field also comes from ``INPUTTUNE_<NAME>``.

This is the only place the serving side reads environment variables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .errors import SettingsError

SECRET_FIELDS = {"admin_api_key"}  # never on a command line (visible in ps): environment or a file


def _default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/inputtune``, else ``~/.cache/inputtune``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "inputtune"


class ServerSettings(BaseSettings):
    """Everything `inputtune serve` can be told. CLI options override the environment."""

    model_config = SettingsConfigDict(env_prefix="INPUTTUNE_", extra="forbid", validate_default=True)

    # ---- model
    model: str | None = Field(
        None, description="Base model folder (Hugging Face layout) or hub id; empty = the embedded demo"
    )
    adapter_dir: Path | None = Field(
        None, description="Folder of <name>.safetensors adapters; empty = the demo's adapters"
    )
    served_model_name: str | None = Field(
        None,
        description="The base model's id on the OpenAI routes (GET /v1/models); empty = its folder's name, "
        "'inputtune-demo' for the embedded demo",
    )
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    dtype: str = Field("auto", description="auto | float32 | bfloat16 | float16 (GPU only)")
    warmup: bool = Field(True, description="Run one small generation at start-up before /ready turns 200")
    cache: Path = Field(
        default_factory=_default_cache_dir,
        description="Folder for the placeholder default base (built there when the demo is not installed)",
    )

    # ---- HTTP
    host: str = Field("127.0.0.1", description="Interface to listen on")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = any free port)")
    admin_api_key: SecretStr | None = Field(
        None, description="Bearer token that enables PUT/DELETE /adapters; unset = admin API off (403)"
    )
    admin_api_key_file: Path | None = Field(
        None, description="File holding the admin key (e.g. a Docker secret); read at start-up"
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Keys the inference routes require (Authorization: Bearer <key>), comma-separated; "
        "KEY=a|b limits a key to adapters a and b (its requests for others get 403); empty = open",
    )
    api_keys_file: Path | None = Field(
        None, description="File of API keys, one per line in the same form (e.g. a mounted secret)"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level")

    # ---- batching
    scheduling: Literal["continuous", "static"] = Field(
        "continuous",
        description="continuous: rows join and leave the running batch between decoder steps "
        "(T5/mT5 bases); static: each batch runs to its end before the next starts",
    )
    compile_decoder: bool = Field(
        False,
        description="Run the continuous decoder step through torch.compile (inductor; CUDA graphs on a "
        "GPU), checked against the base model at start-up. Compiling takes minutes and recompiles for "
        "new batch shapes; docs/performance.md says where it paid",
    )
    batching: Literal["mixed", "per-adapter"] = Field(
        "mixed",
        description="mixed: rows of many adapters share a batch; per-adapter: one adapter per batch "
        "(the baseline of systems without mixed batching)",
    )
    max_batch_size: int = Field(32, ge=1, le=4096, description="Most rows in one batch")
    max_batch_tokens: int = Field(8192, ge=1, description="Most input tokens (prompt included) in one batch")
    max_prefill_tokens: int = Field(
        1024,
        ge=1,
        description="Most input tokens (prompt included) that join the running batch between two decoder "
        "steps (chunked prefill): a burst of long inputs joins over several steps, so the rows already "
        "decoding are not stalled by one long encoder pass. An idle device takes up to max_batch_tokens",
    )
    max_wait_ms: float = Field(
        5.0,
        ge=0,
        le=10_000,
        description="How long a static batch waits to fill up after its first request (continuous "
        "batching starts at once: rows that come later join the running batch at the next step)",
    )
    max_queue: int = Field(1024, ge=1, description="Most rows waiting; beyond it requests get 429")
    max_queue_wait_s: float = Field(
        5.0,
        ge=0,
        description="A request whose expected wait for the device (from the recent service rate and the rows "
        "ahead of it) exceeds this gets 429 at once, with Retry-After; 0 = no limit",
    )
    max_inputs_per_request: int = Field(64, ge=1, description="Most texts in one request's list input")
    max_upload_mb: int = Field(512, ge=1, description="Largest adapter upload (PUT /adapters/NAME) in MB")

    # ---- request limits
    max_input_tokens: int = Field(512, ge=1, description="Longest input in tokens (413 unless truncate)")
    max_new_tokens: int = Field(256, ge=1, description="Cap on a request's max_new_tokens")
    default_max_new_tokens: int = Field(64, ge=1, description="max_new_tokens when a request gives none")
    max_num_beams: int = Field(8, ge=1, description="Cap on a request's num_beams")
    request_timeout_s: float = Field(120.0, gt=0, description="A request waiting longer fails with 503")

    # ---- adapter cache
    device_slots: int = Field(
        16,
        ge=1,
        le=4096,
        description="Adapters resident on the device at once (the most distinct adapters in one batch)",
    )
    host_slots: int = Field(128, ge=1, description="Adapters kept in host memory (>= device_slots)")
    pin: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Adapters always kept on the device"
    )
    preload: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Adapters loaded at start-up"
    )

    # ---- shutdown and metrics
    drain_timeout_s: float = Field(
        30.0, ge=0, description="On SIGTERM, how long in-flight requests may take to finish"
    )
    metrics_max_adapter_labels: int = Field(
        100, ge=1, description="Distinct adapter names labelled in metrics; the rest count as '_other'"
    )

    @field_validator("pin", "preload", "api_keys", mode="before")
    @classmethod
    def _split_names(cls, value):
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> ServerSettings:
        if self.host_slots < self.device_slots:
            raise ValueError(
                f"host_slots ({self.host_slots}) must be >= device_slots ({self.device_slots}): "
                "every adapter on the device also lives in host memory"
            )
        if len(set(self.pin)) >= self.device_slots:
            raise ValueError(
                f"{len(set(self.pin))} pinned adapters leave no free device slot "
                f"(device_slots={self.device_slots}): pin fewer or raise device_slots"
            )
        if self.default_max_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"default_max_new_tokens ({self.default_max_new_tokens}) exceeds max_new_tokens "
                f"({self.max_new_tokens})"
            )
        if self.batching == "per-adapter" and self.scheduling == "continuous":
            raise ValueError("batching=per-adapter is the static baseline: use it with scheduling=static")
        if self.admin_api_key is not None and self.admin_api_key_file is not None:
            raise ValueError("set admin_api_key or admin_api_key_file, not both")
        if self.max_queue < self.max_inputs_per_request:
            raise ValueError(
                f"max_queue ({self.max_queue}) is smaller than max_inputs_per_request "
                f"({self.max_inputs_per_request}): a full request could never be queued"
            )
        if self.max_queue_wait_s and self.request_timeout_s <= self.max_queue_wait_s:
            raise ValueError(
                f"request_timeout_s ({self.request_timeout_s:g}) must exceed max_queue_wait_s "
                f"({self.max_queue_wait_s:g}): requests allowed to wait that long would time out first"
            )
        if self.api_keys and self.api_keys_file is not None:
            raise ValueError("set api_keys or api_keys_file, not both")
        parse_api_keys(self.api_keys)
        return self

    def resolved_api_keys(self) -> dict[str, frozenset[str] | None]:
        """API key -> the adapters it may use (None: all); empty when the inference routes are open."""
        if self.api_keys_file is None:
            return parse_api_keys(self.api_keys)
        try:
            lines = self.api_keys_file.read_text().splitlines()
        except OSError as e:
            raise SettingsError(f"cannot read api_keys_file {self.api_keys_file}: {e}") from e
        keys = parse_api_keys([line.strip() for line in lines if line.strip() and not line.startswith("#")])
        if not keys:
            raise SettingsError(f"api_keys_file {self.api_keys_file} holds no key")
        return keys

    def resolved_admin_key(self) -> str | None:
        """The admin key from the setting or its file (stripped); None when the admin API is off."""
        if self.admin_api_key_file is not None:
            try:
                key = self.admin_api_key_file.read_text().strip()
            except OSError as e:
                raise SettingsError(f"cannot read admin_api_key_file {self.admin_api_key_file}: {e}") from e
            if not key:
                raise SettingsError(f"admin_api_key_file {self.admin_api_key_file} is empty")
            return key
        return self.admin_api_key.get_secret_value() if self.admin_api_key else None


def load_settings(**values) -> ServerSettings:
    """Settings from ``values`` (command-line options), then ``INPUTTUNE_*`` variables, then defaults;
    a SettingsError that lists every problem when they do not validate."""
    try:
        return ServerSettings(**values)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg']}" for err in e.errors()
        )
        raise SettingsError(f"invalid server settings: {problems}") from e


def parse_api_keys(entries: list[str]) -> dict[str, frozenset[str] | None]:
    """``KEY`` or ``KEY=adapter1|adapter2`` entries -> key -> its adapters (None: all)."""
    keys: dict[str, frozenset[str] | None] = {}
    for entry in entries:
        key, sep, adapters = entry.partition("=")
        key = key.strip()
        if len(key) < 8:
            raise SettingsError("an API key must be at least 8 characters long")
        names = frozenset(a.strip() for a in adapters.split("|") if a.strip()) if sep else None
        if sep and not names:
            raise SettingsError("an API key limited with KEY=... must name at least one adapter")
        keys[key] = names
    return keys
