"""inputtune adapters: Input-Tuning adapters (soft prompt + input MLP) on a frozen base model.

Pure math and I/O: no web, no asyncio. The server and training both build on it.
"""

from .apply import apply_adapters
from .bank import NO_ADAPTER, AdapterBank
from .base import BaseModel, BaseModelError, fingerprint, load_base, wrap_base
from .config import FORMAT_VERSION, AdapterConfig
from .errors import (
    AdapterCapacityError,
    AdapterConfigError,
    AdapterError,
    AdapterFormatError,
    AdapterNotFoundError,
    IncompatibleAdapterError,
    InvalidAdapterNameError,
    MissingMetadataError,
    NonFiniteWeightsError,
    NotSafetensorsError,
    TensorMismatchError,
    UnsupportedFormatVersionError,
)
from .fileformat import (
    adapter_path,
    check_compatible,
    from_bytes,
    load_adapter,
    save_adapter,
    to_bytes,
    validate_name,
)
from .generation import GenerationOutput, GenerationParams
from .model import AdaptedModel, InputTooLongError
from .module import AdapterWeights, InputAdapter, init_adapter, random_adapter
from .peft_import import import_peft_prompt

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
    "AdapterWeights",
    "BaseModel",
    "BaseModelError",
    "GenerationOutput",
    "GenerationParams",
    "IncompatibleAdapterError",
    "InputAdapter",
    "InputTooLongError",
    "InvalidAdapterNameError",
    "MissingMetadataError",
    "NonFiniteWeightsError",
    "NotSafetensorsError",
    "TensorMismatchError",
    "UnsupportedFormatVersionError",
    "adapter_path",
    "apply_adapters",
    "check_compatible",
    "fingerprint",
    "from_bytes",
    "import_peft_prompt",
    "init_adapter",
    "load_adapter",
    "load_base",
    "random_adapter",
    "save_adapter",
    "to_bytes",
    "validate_name",
    "wrap_base",
]
