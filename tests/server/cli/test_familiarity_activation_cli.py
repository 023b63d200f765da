"""`inputtune familiarity` and `inputtune adapters activation` end to end on a tiny base folder."""

from __future__ import annotations

import json

import pytest
import torch

from adapters import AdapterConfig, AdapterWeights, fingerprint, save_adapter
from adapters.testing import build_random_base, save_base
from server.cli.main import main


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory):
    """A tiny T5 (byte tokenizer: 'a' is id 100, 'b' 101, EOS 1) whose embeddings of a, b and EOS are
    set by hand, and an input-tuning adapter with W1 = I, W2 = 2·I, zero biases: Δ(x) = 2·relu(x)."""
    folder = tmp_path_factory.mktemp("fam")
    base = build_random_base("t5", "tiny")
    emb = base.model.get_input_embeddings().weight
    with torch.no_grad():
        for token_id, values in ((100, (3.0, 4.0)), (101, (-3.0, 4.0)), (1, (-1.0, -1.0))):
            emb[token_id] = 0.0
            emb[token_id, :2] = torch.tensor(values)
    save_base(base, folder / "base")
    d = base.d_model
    config = AdapterConfig(
        "input-tuning", d, prompt_length=1, hidden_size=d, base_fingerprint=fingerprint(base.model)
    )
    tensors = {
        "prompt": torch.zeros(1, d),
        "mlp.w1": torch.eye(d),
        "mlp.b1": torch.zeros(d),
        "mlp.w2": 2 * torch.eye(d),
        "mlp.b2": torch.zeros(d),
    }
    save_adapter(AdapterWeights(config, tensors), folder / "hand.safetensors")
    return folder


def test_activation_prints_hand_values_most_changed_first(base_folder, capsys):
    code = main(
        [
            "adapters",
            "activation",
            "--model",
            str(base_folder / "base"),
            "--adapter",
            str(base_folder / "hand.safetensors"),
            "--input",
            "ab",
            "--json",
        ]
    )
    assert code == 0
    rows = json.loads(capsys.readouterr().out)["tokens"]
    # (3,4) -> 10/5 = 2; (-3,4) -> 8/5 = 1.6; EOS (-1,-1) -> 0
    assert [(r["token"], r["position"]) for r in rows] == [("a", 0), ("b", 1), ("</s>", 2)]
    assert [r["change"] for r in rows] == pytest.approx([2.0, 1.6, 0.0])


def test_activation_table_and_top(base_folder, capsys):
    args = ["adapters", "activation", "--model", str(base_folder / "base")]
    args += ["--adapter", str(base_folder / "hand.safetensors"), "--input", "ba", "--top", "1"]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].split() == ["1", "2.000", "'a'"]
    assert len(lines) == 3  # title, header, one row


def test_familiarity_on_a_file_with_a_user_corpus(base_folder, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abab\n")  # bigrams ab:2, ba:1
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text(json.dumps({"source": "ab"}) + "\n" + json.dumps({"source": "xy"}) + "\n")
    args = ["familiarity", "--model", str(base_folder / "base"), "--file", str(inputs)]
    args += ["--corpus", str(corpus), "--cache-dir", str(tmp_path / "cache"), "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["familiarity"] == pytest.approx(1e6 * (2 / 3 + 0) / 2)  # xy unseen: counts as 0
    assert result["unseen"] == pytest.approx(0.5)
    assert result["corpus"] == "files" and "has no recipe.json" in result["corpus_note"]
    assert result["reading"]


def test_familiarity_text_file_prints_the_reading(base_folder, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abab\n")
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("ab\nba\n")
    args = ["familiarity", "--model", str(base_folder / "base"), "--file", str(inputs)]
    args += ["--corpus", str(corpus), "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 inputs, 2 token bigrams" in out
    assert "familiarity: 500000.0 per million" in out  # (2/3 + 1/3) / 2
    assert "reading: familiar" in out


def test_familiarity_without_recipe_or_corpus_is_a_usage_error(base_folder, tmp_path, capsys):
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("ab\n")
    code = main(["familiarity", "--model", str(base_folder / "base"), "--file", str(inputs)])
    assert code == 2
    assert "has no recipe.json" in capsys.readouterr().err


def test_familiarity_of_a_builtin_task(base_folder, tmp_path, capsys):
    from training.data import DataNotFoundError, resolve_data_dir

    try:
        resolve_data_dir()
    except DataNotFoundError:
        pytest.skip("the shared data folder (../shared/data or $INPUTTUNE_DATA_DIR) is absent")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("name[The Eagle], eatType[coffee shop]\n")
    args = ["familiarity", "--model", str(base_folder / "base"), "--task", "e2e-opaque"]
    args += ["--corpus", str(corpus), "--cache-dir", str(tmp_path / "cache"), "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["inputs"] == 630 and result["what"] == "task e2e-opaque (test)"
    assert 0 < result["unseen"] < 1
