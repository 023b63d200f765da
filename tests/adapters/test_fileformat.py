"""Adapter files: round trips keep every value; each kind of bad file raises its own error."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import save as st_save

from adapters import (
    AdapterConfig,
    AdapterConfigError,
    AdapterNotFoundError,
    AdapterUnreadableError,
    AdapterWriteError,
    IncompatibleAdapterError,
    InvalidAdapterNameError,
    MissingMetadataError,
    NonFiniteWeightsError,
    NotSafetensorsError,
    StorageFullError,
    TensorMismatchError,
    UnsupportedFormatVersionError,
    adapter_path,
    from_bytes,
    list_adapter_names,
    load_adapter,
    random_adapter,
    read_config,
    save_adapter,
    to_bytes,
)
from adapters.fileformat import MAX_HEADER_BYTES, META_CONFIG, META_EXTRA, META_FORMAT, json_depth

FP = "sha256:" + "ab" * 16


def sample(kind="input-tuning", **kw):
    config = AdapterConfig(kind, 16, prompt_length=3, base_model="tiny", base_fingerprint=FP, **kw)
    weights = random_adapter(config, seed=1, scale=0.3)
    weights.metadata.update({"task": "e2e", "steps": "120"})
    return weights


def write_raw(path, tensors, metadata):
    path.write_bytes(st_save(tensors, metadata=metadata))
    return path


def good_metadata(config):
    return {META_FORMAT: "1", META_CONFIG: config.to_json(), META_EXTRA: "{}"}


@pytest.mark.parametrize("kind", ["input-tuning", "prompt-tuning"])
def test_round_trip_keeps_every_value(tmp_path, kind):
    weights = sample(kind)
    path = save_adapter(weights, tmp_path / "a.safetensors")
    loaded = load_adapter(path, fingerprint=FP, d_model=16)
    assert loaded.config == weights.config
    assert loaded.metadata == {"task": "e2e", "steps": "120"}
    assert set(loaded.tensors) == set(weights.tensors)
    for name, tensor in weights.tensors.items():
        assert torch.equal(loaded.tensors[name], tensor), name
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]  # no temporary file left behind


def test_bf16_save_round_trips_to_bf16_values(tmp_path):
    weights = sample()
    loaded = load_adapter(save_adapter(weights, tmp_path / "b.safetensors", dtype=torch.bfloat16))
    assert loaded.tensors["mlp.w1"].dtype == torch.bfloat16
    assert torch.equal(loaded.tensors["mlp.w1"], weights.tensors["mlp.w1"].to(torch.bfloat16))


def test_truncated_file(tmp_path):
    data = to_bytes(sample())
    (tmp_path / "t.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(NotSafetensorsError, match="truncated"):
        load_adapter(tmp_path / "t.safetensors")


def test_pickle_renamed_to_safetensors_is_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    (tmp_path / "p.safetensors").write_bytes(pickle.dumps({"prompt": Boom()}))
    with pytest.raises(NotSafetensorsError, match="pickle"):
        load_adapter(tmp_path / "p.safetensors")
    buffer = tmp_path / "t.pt"
    torch.save({"prompt": torch.zeros(2)}, buffer)
    (tmp_path / "z.safetensors").write_bytes(buffer.read_bytes())
    with pytest.raises(NotSafetensorsError, match="never unpickles"):
        load_adapter(tmp_path / "z.safetensors")


def test_random_bytes(tmp_path):
    (tmp_path / "r.safetensors").write_bytes(struct.pack("<Q", 20) + b"not json at all!!!!!" + b"\0" * 10)
    with pytest.raises(NotSafetensorsError, match="header is not JSON"):
        load_adapter(tmp_path / "r.safetensors")


def test_missing_metadata(tmp_path):
    write_raw(tmp_path / "m.safetensors", dict(sample().tensors), None)
    with pytest.raises(MissingMetadataError, match="without inputtune metadata"):
        load_adapter(tmp_path / "m.safetensors")


def test_unknown_format_version(tmp_path):
    weights = sample()
    meta = good_metadata(weights.config) | {META_FORMAT: "7"}
    write_raw(tmp_path / "v.safetensors", dict(weights.tensors), meta)
    with pytest.raises(UnsupportedFormatVersionError, match="version 7.*upgrade inputtune"):
        load_adapter(tmp_path / "v.safetensors")


def test_wrong_shapes(tmp_path):
    weights = sample()
    tensors = dict(weights.tensors) | {"mlp.w1": torch.zeros(16, 5)}
    write_raw(tmp_path / "s.safetensors", tensors, good_metadata(weights.config))
    with pytest.raises(TensorMismatchError, match=r"'mlp.w1' has shape \(16, 5\).*needs \(16, 32\)"):
        load_adapter(tmp_path / "s.safetensors")


def test_missing_and_unexpected_tensors(tmp_path):
    weights = sample()
    tensors = {k: v for k, v in weights.tensors.items() if k != "mlp.b2"} | {"lora_A": torch.zeros(2)}
    write_raw(tmp_path / "n.safetensors", tensors, good_metadata(weights.config))
    with pytest.raises(TensorMismatchError, match=r"missing \['mlp.b2'\], unexpected \['lora_A'\]"):
        load_adapter(tmp_path / "n.safetensors")


def test_wrong_dtype(tmp_path):
    weights = sample()
    tensors = dict(weights.tensors) | {"prompt": torch.zeros(3, 16, dtype=torch.int32)}
    write_raw(tmp_path / "d.safetensors", tensors, good_metadata(weights.config))
    with pytest.raises(TensorMismatchError, match="dtype torch.int32"):
        load_adapter(tmp_path / "d.safetensors")


def test_nan_weights(tmp_path):
    weights = sample()
    bad = weights.tensors["mlp.w2"].clone()
    bad[0, 0] = float("nan")
    write_raw(
        tmp_path / "x.safetensors", dict(weights.tensors) | {"mlp.w2": bad}, good_metadata(weights.config)
    )
    with pytest.raises(NonFiniteWeightsError, match="'mlp.w2' holds NaN"):
        load_adapter(tmp_path / "x.safetensors")


def test_wrong_base_fingerprint_and_width(tmp_path):
    path = save_adapter(sample(), tmp_path / "f.safetensors")
    with pytest.raises(IncompatibleAdapterError, match="trained on another base model"):
        load_adapter(path, fingerprint="sha256:" + "cd" * 16, d_model=16)
    with pytest.raises(IncompatibleAdapterError, match="d_model=16 but the base model has d_model=1024"):
        load_adapter(path, fingerprint=FP, d_model=1024)


def test_bad_config_unknown_key(tmp_path):
    weights = sample()
    config = json.loads(weights.config.to_json()) | {"promt_length": 3}
    meta = good_metadata(weights.config) | {META_CONFIG: json.dumps(config)}
    write_raw(tmp_path / "c.safetensors", dict(weights.tensors), meta)
    with pytest.raises(AdapterConfigError, match=r"unknown adapter config keys \['promt_length'\]"):
        load_adapter(tmp_path / "c.safetensors")


def test_missing_file(tmp_path):
    with pytest.raises(AdapterNotFoundError, match="no adapter file"):
        load_adapter(tmp_path / "nope.safetensors")


def test_config_validation():
    with pytest.raises(AdapterConfigError, match="kind 'lora'"):
        AdapterConfig("lora", 16, 2)  # type: ignore[arg-type]
    with pytest.raises(AdapterConfigError, match="hidden_size must be 0"):
        AdapterConfig("prompt-tuning", 16, 2, hidden_size=8)
    assert AdapterConfig("input-tuning", 16, 2).hidden_size == 32
    assert AdapterConfig.from_json(AdapterConfig("input-tuning", 16, 2).to_json()).hidden_size == 32


@pytest.mark.parametrize(
    "name", ["../etc/passwd", "a/b", ".hidden", "", "x" * 129, "a b", "fr-en.safetensors"]
)
def test_adapter_names_cannot_escape_the_folder(tmp_path, name):
    with pytest.raises(InvalidAdapterNameError, match="invalid adapter name"):
        adapter_path(tmp_path, name)


def test_valid_adapter_name(tmp_path):
    assert adapter_path(tmp_path, "fr-en_v1.2") == (tmp_path / "fr-en_v1.2.safetensors").absolute()


def test_symlinked_adapter_files_load(tmp_path):
    elsewhere = save_adapter(sample(), tmp_path / "store" / "real.safetensors")
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "linked.safetensors").symlink_to(elsewhere)
    loaded = load_adapter(adapter_path(tmp_path / "served", "linked"))
    assert torch.equal(loaded.prompt, sample().prompt)


@pytest.mark.parametrize("header_len, first_bytes", [(0x380, b"\x80"), (0x4B50, b"PK")])
def test_valid_files_whose_header_length_looks_like_a_pickle_load(tmp_path, header_len, first_bytes):
    """A header length of 0x..80 (or 0x4B50) makes a valid file start like a pickle (or a zip)."""
    weights = sample()

    def build(pad: int) -> bytes:
        meta = {**good_metadata(weights.config), "pad": " " * pad}
        return st_save(dict(weights.tensors), metadata=meta)

    natural = struct.unpack("<Q", build(0)[:8])[0]
    for pad in range(header_len - natural - 16, header_len - natural + 16):
        data = build(pad)
        if struct.unpack("<Q", data[:8])[0] == header_len:
            break
    assert data.startswith(first_bytes)
    (tmp_path / "odd.safetensors").write_bytes(data)
    assert torch.equal(load_adapter(tmp_path / "odd.safetensors").prompt, weights.prompt)


def crafted(header: dict, tensor_bytes: bytes = b"") -> bytes:
    """A safetensors file with a hand-written header (any JSON the parser may meet)."""
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + tensor_bytes


def prompt_header(metadata) -> dict:
    return {"__metadata__": metadata, "prompt": {"dtype": "F32", "shape": [1, 2], "data_offsets": [0, 8]}}


@pytest.mark.parametrize(
    "metadata, error, fragment",
    [
        ("a string", MissingMetadataError, "__metadata__ must be a JSON object of strings"),
        (42, MissingMetadataError, "__metadata__ must be a JSON object of strings"),
        ({META_FORMAT: "1", META_CONFIG: {"kind": "x"}}, MissingMetadataError, "object of strings"),
        ({META_FORMAT: ["1"], META_CONFIG: "{}"}, MissingMetadataError, "object of strings"),
        ({META_FORMAT: "1", META_CONFIG: "{}", META_EXTRA: 7}, MissingMetadataError, "object of strings"),
        ({META_FORMAT: "1", META_CONFIG: "[1, 2]"}, AdapterConfigError, "must be a JSON object"),
        (
            {
                META_FORMAT: "1",
                META_CONFIG: '{"kind": "input-tuning", "d_model": 2, "prompt_length": 1, "format_version": [1]}',
            },
            AdapterConfigError,
            "format_version",
        ),
        (
            {META_FORMAT: "1", META_CONFIG: '{"kind": ["x"], "d_model": 2, "prompt_length": 1}'},
            AdapterConfigError,
            "kind",
        ),
        (
            {
                META_FORMAT: "1",
                META_CONFIG: '{"kind": "input-tuning", "d_model": 2, "prompt_length": 1, "base_model": {}}',
            },
            AdapterConfigError,
            "base_model must be a string",
        ),
        ({META_FORMAT: "x", META_CONFIG: "{}"}, UnsupportedFormatVersionError, "format version"),
        (
            {
                META_FORMAT: "1",
                META_CONFIG: '{"kind": "prompt-tuning", "d_model": 2, "prompt_length": 1}',
                META_EXTRA: "5",
            },
            AdapterConfigError,
            "must be a JSON object",
        ),
    ],
)
def test_metadata_of_any_json_shape_is_a_format_error(metadata, error, fragment):
    """Wrong JSON types anywhere in the metadata are the file's fault, said precisely (never a TypeError)."""
    with pytest.raises(error, match=fragment):
        from_bytes(crafted(prompt_header(metadata), b"\0" * 8))


def test_deep_headers_are_refused_before_parsing():
    deep = b"[" * 100_000 + b"]" * 100_000
    data = struct.pack("<Q", len(deep)) + deep
    with pytest.raises(NotSafetensorsError, match="nests 100000 levels deep"):
        from_bytes(data)
    assert json_depth(b'{"a": [1, {"b": "[[[[{{"}]}') == 3  # brackets inside strings do not count
    big = crafted({"__metadata__": {"x": "y" * (MAX_HEADER_BYTES + 10)}})
    with pytest.raises(NotSafetensorsError, match="header length"):
        from_bytes(big)


def test_files_that_cannot_be_read_say_so(tmp_path):
    (tmp_path / "folder.safetensors").mkdir()
    with pytest.raises(AdapterUnreadableError, match="is a folder, not a file"):
        load_adapter(tmp_path / "folder.safetensors")
    with pytest.raises(AdapterUnreadableError, match="is a folder"):
        read_config(tmp_path / "folder.safetensors")
    assert list_adapter_names(tmp_path / "missing") == []
    (tmp_path / "a.safetensors").write_bytes(b"")
    (tmp_path / ".hidden.safetensors").write_bytes(b"")
    assert list_adapter_names(tmp_path) == ["a", "folder"]


@pytest.mark.parametrize(
    "code, error, fragment", [(28, StorageFullError, "no space left"), (30, AdapterWriteError, "read-only")]
)
def test_failed_writes_leave_nothing_behind(tmp_path, monkeypatch, code, error, fragment):
    import os

    target = save_adapter(sample(), tmp_path / "a.safetensors")
    before = target.read_bytes()

    def failing_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(error, match=fragment):
        save_adapter(sample("prompt-tuning"), target)
    assert target.read_bytes() == before  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]  # no temporary file left
