"""inputtune adapters: Input-Tuning adapters (soft prompt + input MLP) on a frozen base model.

The method and the inference runtime: no web, no asyncio. The server and training both build on it.
Floors inside: ``errors``, ``config`` and ``ops`` are leaves; ``module``, ``bank``, ``apply``,
``fileformat`` and ``io`` build the adapters; ``base``, ``text`` and ``decoding/`` run the frozen
model; ``model.AdaptedModel`` puts them together.
"""

from .apply import apply_adapters
from .bank import NO_ADAPTER, AdapterBank
from .base import BaseModel, fingerprint, load_base, wrap_base
from .config import FORMAT_VERSION, AdapterConfig
from .decoding import GenerationOutput, GenerationParams
from .errors import (
    AdapterCapacityError,
    AdapterConfigError,
    AdapterError,
    AdapterFormatError,
    AdapterNotFoundError,
    AdapterUnreadableError,
    AdapterWriteError,
    BaseModelError,
    IncompatibleAdapterError,
    InputTooLongError,
    InputtuneError,
    InvalidAdapterNameError,
    InvalidInputError,
    InvalidParametersError,
    MissingMetadataError,
    NonFiniteWeightsError,
    NotSafetensorsError,
    StorageFullError,
    TensorMismatchError,
    UnsupportedFormatVersionError,
)
from .fileformat import check_compatible, from_bytes, to_bytes
from .io import adapter_path, list_adapter_names, load_adapter, read_config, save_adapter, validate_name
from .model import AdaptedModel
from .module import AdapterWeights, InputAdapter, init_adapter, random_adapter
from .peft_import import import_peft_prompt
from .text import decode_text, encode_sources

__all__ = [
    "FORMAT_VERSION",
    "NO_ADAPTER",
    "AdaptedModel",
    "AdapterBank",
    "AdapterCapacityError",
    "AdapterConfig",
    "AdapterConfigError",
    "AdapterError",
    "AdapterFormatError",
    "AdapterNotFoundError",
    "AdapterUnreadableError",
    "AdapterWeights",
    "AdapterWriteError",
    "BaseModel",
    "BaseModelError",
    "GenerationOutput",
    "GenerationParams",
    "IncompatibleAdapterError",
    "InputAdapter",
    "InputTooLongError",
    "InputtuneError",
    "InvalidAdapterNameError",
    "InvalidInputError",
    "InvalidParametersError",
    "MissingMetadataError",
    "NonFiniteWeightsError",
    "NotSafetensorsError",
    "StorageFullError",
    "TensorMismatchError",
    "UnsupportedFormatVersionError",
    "adapter_path",
    "apply_adapters",
    "check_compatible",
    "decode_text",
    "encode_sources",
    "fingerprint",
    "from_bytes",
    "import_peft_prompt",
    "init_adapter",
    "list_adapter_names",
    "load_adapter",
    "load_base",
    "random_adapter",
    "read_config",
    "save_adapter",
    "to_bytes",
    "validate_name",
    "wrap_base",
]
