"""The one-shot CLI: `inputtune generate` prints what the adapted model generates."""

from __future__ import annotations

import json

import pytest
import torch

from adapters import AdaptedModel, GenerationParams, load_adapter, save_adapter
from adapters.testing import save_base
from server.cli.main import main
from tests.conftest import make_model


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    model = make_model("t5")
    save_base(model.base, folder / "base")
    from adapters import AdapterConfig, random_adapter

    config = AdapterConfig("input-tuning", model.base.d_model, 4, base_fingerprint=model.base.fingerprint)
    save_adapter(random_adapter(config, seed=9, scale=0.5), folder / "adapters" / "demo.safetensors")
    return folder


def test_generate_prints_one_line_per_input(model_folder, capsys):
    texts = ["hello world", "name[The Eagle], food[French]"]
    code = main(
        [
            "generate",
            "--model",
            str(model_folder / "base"),
            "--adapter-dir",
            str(model_folder / "adapters"),
            "--adapter",
            "demo",
            "--max-new-tokens",
            "6",
            *texts,
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    model = AdaptedModel.load(model_folder / "base", device="cpu", num_slots=1)
    model.load_adapter(1, load_adapter(model_folder / "adapters" / "demo.safetensors"))
    expected = model.generate(texts, [1, 1], GenerationParams(max_new_tokens=6))
    assert lines == [" ".join(o.text.splitlines()) for o in expected]


def test_generate_unknown_adapter_is_an_error(model_folder, capsys):
    code = main(
        [
            "generate",
            "--model",
            str(model_folder / "base"),
            "--adapter-dir",
            str(model_folder / "adapters"),
            "--adapter",
            "nope",
            "hi",
        ]
    )
    assert code == 2
    assert "no adapter file" in capsys.readouterr().err


def test_generate_bad_parameter_is_an_error(model_folder, capsys):
    code = main(["generate", "--model", str(model_folder / "base"), "--max-new-tokens", "0", "hi"])
    assert code == 2
    assert "max_new_tokens must be >= 1" in capsys.readouterr().err


def test_embedded_default_works_with_no_options(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INPUTTUNE_CACHE", str(tmp_path))
    monkeypatch.setattr("server.demo.DEMO_DIR", tmp_path / "no-demo")  # force the placeholder
    assert main(["generate", "--adapter", "random-1", "--max-new-tokens", "4", "a", "b"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert (tmp_path / "placeholder-v1" / "adapters" / "random-2.safetensors").is_file()


def test_inspect_prints_config(model_folder, capsys):
    assert (
        main(
            [
                "adapters",
                "inspect",
                str(model_folder / "adapters" / "demo.safetensors"),
                "--model",
                str(model_folder / "base"),
            ]
        )
        == 0
    )
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["kind"] == "input-tuning" and info["config"]["prompt_length"] == 4


def test_synth_writes_compatible_random_adapters(model_folder, tmp_path, capsys):
    out = tmp_path / "synth"
    assert (
        main(
            [
                "adapters",
                "synth",
                "--base",
                str(model_folder / "base"),
                "--count",
                "3",
                "--out",
                str(out),
                "--prompt-length",
                "2",
            ]
        )
        == 0
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == ["synth-0.safetensors", "synth-1.safetensors", "synth-2.safetensors"]
    model = AdaptedModel.load(model_folder / "base", device="cpu", num_slots=3)
    weights = [model.load_adapter_file(i + 1, out / name) for i, name in enumerate(names)]
    assert weights[0].tensors["mlp.w2"].dtype == torch.bfloat16
    assert not torch.equal(weights[0].tensors["mlp.w1"], weights[1].tensors["mlp.w1"])
    outs = model.generate(["same input"] * 3, [1, 2, 3], GenerationParams(max_new_tokens=5))
    assert len({tuple(o.token_ids) for o in outs}) > 1
