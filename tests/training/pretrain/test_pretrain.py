"""`inputtune pretrain` end to end with the tiny preset on fixture data: the saved folder loads as a
base, its tokenizer round-trips, a resumed run ends with the same weights as an uninterrupted one,
the gate fails loudly for a base that ignores its input, and presets are validated."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from server.cli.errors import EXIT_GATE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from server.cli.main import main
from training.data.tasks import OVERNIGHT_DOMAINS
from training.errors import PresetError
from training.pretrain.config import PRESET_DIR, load_preset
from training.pretrain.eval import gate_verdict
from training.pretrain.mixture import MixtureStream, prepare_corpus

# --- fixture data: every task the tokenizer corpus reads, small but long enough to train on -----------

SUBJECTS = ["The old man", "A young woman", "The captain", "My brother", "The small dog", "A tall stranger"]
VERBS = ["walked to", "looked at", "spoke about", "dreamed of", "ran past", "waited near"]
OBJECTS = ["the river", "the quiet house", "a green field", "the harbour", "the last train", "a broken door"]
FRENCH = {"The": "Le", "A": "Un", "man": "homme", "dog": "chien", "river": "rivière", "house": "maison"}


def _sentences(rng: random.Random, count: int) -> list[str]:
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}." for _ in range(count)]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _lines(path: Path, lines: list[str]) -> None:
    _write(path, "".join(line + "\n" for line in lines))


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    _lines(path, [json.dumps(row, ensure_ascii=False) for row in rows])


def write_data(root: Path) -> Path:
    """A miniature shared/data folder in the real formats, with four books."""
    rng = random.Random(0)
    for i in range(4):
        paragraphs = [" ".join(_sentences(rng, 6)) for _ in range(12)]
        _write(root / "pretrain_en" / "books" / f"book_{i}.txt", "\n\n".join(paragraphs) + "\n")
    english = _sentences(rng, 60)
    french = [" ".join(FRENCH.get(w, w) for w in s.split()) + " (fr)" for s in english]
    for stem, part in (("train", slice(0, 40)), ("val", slice(40, 45)), ("test_2016_flickr", slice(45, 60))):
        _lines(root / "multi30k" / f"{stem}.en", english[part])
        for lang in ("fr", "de", "cs"):
            _lines(root / "multi30k" / f"{stem}.{lang}", [f"{s} [{lang}]" for s in french[part]])
    entries = [
        {"triples": [[s.split()[-1], v.split()[0], o.split()[-1]]], "lexs": [{"text": f"{s} {v} {o}."}]}
        for s, v, o in zip(SUBJECTS * 2, VERBS + VERBS[::-1], OBJECTS[::-1] * 2, strict=True)
    ]
    rows = [{"tripleset": e["triples"], "source": "webnlg", "text": e["lexs"][0]["text"]} for e in entries]
    rows.append({"tripleset": [["Alimentum", "area", "city centre"]], "source": "e2e", "text": "Alimentum."})
    for split in ("train", "dev", "test"):
        _jsonl(root / "webnlg2017" / f"{split}.jsonl", entries)
        _jsonl(root / "dart" / f"{split}.jsonl", rows)
    e2e = 'mr,ref\n"name[The Vaults], eatType[pub]","The Vaults is a pub."\n'
    for name in ("trainset.csv", "devset.csv", "testset_w_refs.csv"):
        _write(root / "e2e" / name, e2e)
    for domain in OVERNIGHT_DOMAINS:
        for kind in ("train", "test"):
            _lines(
                root / "overnight" / f"{domain}_{kind}.tsv",
                [f"utterance {i}\tcanonical\t( lf {i} )" for i in range(3)],
            )
    for stem in ("europarl_toy10k", "newsdev2016", "newstest2016"):
        _lines(root / "wmt16_ro_en" / f"{stem}.ro", ["o propoziție", "alta"])
        _lines(root / "wmt16_ro_en" / f"{stem}.en", ["a sentence", "another"])
    for lang in ("eng", "fra", "deu", "ces", "ron"):
        _lines(root / "flores101_devtest" / f"{lang}.devtest", english[:4])
    for pair in ("fr-en", "de-en"):
        for lang in (pair[:2], "en"):
            _lines(root / "wmt14_newstest_fr_de_en" / pair / f"newstest2014.{lang}", english[:2])
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data(tmp_path_factory.mktemp("data"))


def _pretrain(*argv: str) -> int:
    """`inputtune pretrain ARGV --no-progress`: its exit code."""
    return main(["pretrain", *argv, "--no-progress"])


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("model*.safetensors")):
        tensors.update(load_file(path))
    return tensors


@pytest.fixture(scope="module")
def tiny_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "base"
    assert _pretrain("--preset", "tiny", "--out", str(out), "--data-dir", str(data_dir)) == EXIT_OK
    return out


# --- end to end ----------------------------------------------------------------------------------------


def test_tiny_run_writes_a_loadable_base(tiny_run: Path) -> None:
    from adapters import load_base

    names = {p.name for p in tiny_run.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "pretrain_log.jsonl",
        "recipe.json",
    } <= names
    assert any(n.startswith("model") and n.endswith(".safetensors") for n in names)
    assert all(t.dtype == torch.bfloat16 for t in _weights(tiny_run).values())
    first, again = load_base(tiny_run, device="cpu"), load_base(tiny_run, device="cpu", dtype="bfloat16")
    assert first.family == "encoder-decoder" and first.fingerprint == again.fingerprint
    text = "Le homme walked to the rivière. £ [ ] ș"
    ids = first.tokenizer(text)["input_ids"]
    assert ids[-1] == first.tokenizer.eos_token_id
    assert first.tokenizer.decode(ids, skip_special_tokens=True) == text
    out = first.model.generate(
        **first.tokenizer(["translate French to English: Le chien"], return_tensors="pt"), max_new_tokens=4
    )
    assert out.shape[0] == 1


def test_tiny_run_records_the_recipe(tiny_run: Path) -> None:
    recipe = json.loads((tiny_run / "recipe.json").read_text())
    sources = recipe["sources"]
    assert sources["supervised"]["dart"]["exclude_e2e"] is True
    assert sources["supervised"]["dart"]["examples"] == 12  # the e2e row is left out
    assert sources["supervised"]["fr-en"]["examples"] == 40
    assert sources["books"]["heldout_books"] == ["book_1.txt", "book_3.txt"]
    assert set(sources["kept_out_of_the_base"]) == {"e2e", "overnight", "de-en", "cs-en", "ro-en"}
    training = recipe["training"]
    assert training["steps"] == 6 and training["tokens"] > 0
    assert set(training["tokens_by_source"]) == {"span_corruption", "prefix_lm", "supervised"}
    assert recipe["gate"]["passed"] is True and recipe["scores"]["fr_en_test_count"] == 8
    assert recipe["fingerprint"].startswith("sha256:")
    assert recipe["tokenizer"]["trained"] is True
    # a recipe ships with the base: it names no path of the machine that trained it
    assert recipe["argv"][0] == "inputtune" and str(tiny_run.parent) not in json.dumps(recipe["argv"][:1])
    assert sources["data_dir"] == "relative to --data-dir"
    events = [
        json.loads(line)["event"] for line in (tiny_run / "pretrain_log.jsonl").read_text().splitlines()
    ]
    assert events[0] == "start" and events[-1] == "done" and "step" in events and "sample" in events


def test_resume_matches_an_uninterrupted_run(data_dir: Path, tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    common = ("--preset", "tiny", "--out", str(out), "--data-dir", str(data_dir))
    tokenizer = ("--tokenizer", str(tiny_run / "tokenizer"))
    assert _pretrain(*common, *tokenizer, "--stop-at-step", "3") == EXIT_OK
    assert (out / "checkpoint" / "state.pt").is_file() and not list(out.glob("model*.safetensors"))
    assert _pretrain(*common, "--resume", "--set", "train.lr=0.1") == EXIT_USAGE  # the recipe is fixed
    assert _pretrain(*common, "--resume") == EXIT_OK  # finds the run's own tokenizer copy
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["training"]["steps"] == 6
    # The uninterrupted run trained its own tokenizer from the same data: same files, same ids.
    assert (tiny_run / "tokenizer" / "tokenizer.json").read_text() == (out / "tokenizer.json").read_text()
    reference, resumed = _weights(tiny_run), _weights(out)
    assert reference.keys() == resumed.keys()
    for name in reference:
        assert torch.equal(reference[name], resumed[name]), name


def test_usage_errors(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ("--preset", "tiny", "--data-dir", str(data_dir))
    assert _pretrain(*common, "--out", str(tmp_path / "x"), "--resume") == EXIT_USAGE
    assert "--resume needs a checkpoint" in capsys.readouterr().err
    assert _pretrain(*common, "--out", str(tmp_path / "y"), "--tokenizer", str(tmp_path)) == EXIT_USAGE
    assert "lacks ['tokenizer.json', 'tokenizer_config.json']" in capsys.readouterr().err
    assert (
        _pretrain("--preset", "tiny", "--out", str(tmp_path / "z"), "--data-dir", str(tmp_path / "no"))
        == EXIT_USAGE
    )
    assert "data folder not found" in capsys.readouterr().err


def test_tokenizer_only_trains_the_presets_tokenizer_and_checks_it(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tokenizer"
    code = _pretrain("--preset", "tiny", "--tokenizer-only", "--out", str(out), "--data-dir", str(data_dir))
    assert code == EXIT_OK
    assert sorted(p.name for p in out.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    assert "round trip: 0 failures" in capsys.readouterr().out
    assert _pretrain("--tokenizer-only", "--out", str(out), "--resume") == EXIT_USAGE


def test_an_interrupted_run_saves_a_checkpoint(
    data_dir: Path, tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.pretrain import loop

    calls = []

    def interrupted_at_the_third_step(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return train_step(*args, **kwargs)

    train_step = loop.train_step
    monkeypatch.setattr(loop, "train_step", interrupted_at_the_third_step)
    out = tmp_path / "interrupted"
    tokenizer = ("--tokenizer", str(tiny_run / "tokenizer"))
    assert (
        _pretrain("--preset", "tiny", "--out", str(out), "--data-dir", str(data_dir), *tokenizer)
        == EXIT_INTERRUPTED
    )
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == ["preset.json", "state.pt"]


def test_gate_fails_loudly_and_removes_weights(
    data_dir: Path, tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rejected"
    code = _pretrain(
        "--preset",
        "tiny",
        "--out",
        str(out),
        "--data-dir",
        str(data_dir),
        "--tokenizer",
        str(tiny_run / "tokenizer"),
        "--max-steps",
        "2",
        "--set",
        "eval.gate.min_input_gain=5.0",
    )
    assert code == EXIT_GATE
    err = capsys.readouterr().err
    assert "GATE FAILED" in err and "IGNORES ITS INPUT" in err
    assert not list(out.glob("model*.safetensors")) and (out / "config.json").is_file()
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["gate"]["passed"] is False and recipe["gate"]["weights_removed"] is True


def test_eval_only_scores_a_saved_folder(
    data_dir: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _pretrain("--eval-only", str(tiny_run), "--data-dir", str(data_dir))
    assert code == EXIT_OK
    gate = json.loads((tiny_run / "gate.json").read_text())
    recipe = json.loads((tiny_run / "recipe.json").read_text())
    assert (
        gate["scores"]["fr_en_test_bleu"] == recipe["scores"]["fr_en_test_bleu"]
    )  # same weights, same score


def test_gate_verdict() -> None:
    gate = load_preset("gpu").eval.gate
    good = {
        "distinct_outputs": 0.97,
        "input_gain_nats": 1.2,
        "fr_en_test_bleu": 30.0,
        "webnlg_dev_bleu": 20.0,
    }
    assert gate_verdict(good, gate) == (True, [])
    passed, reasons = gate_verdict(good | {"distinct_outputs": 0.01, "input_gain_nats": 0.0}, gate)
    assert not passed and len(reasons) == 2 and "distinct outputs" in reasons[0]
    assert gate_verdict(good | {"encoder_position_cosine": 0.3}, gate) == (True, [])
    passed, reasons = gate_verdict(good | {"encoder_position_cosine": 0.99}, gate)
    assert not passed and reasons == [
        "the encoder has collapsed: its outputs at different positions have mean cosine 0.99 > 0.9"
    ]


def test_encoder_position_cosine_sees_a_collapsed_encoder() -> None:
    from tests.conftest import make_model
    from training.pretrain.eval import encoder_position_cosine

    model = make_model("t5")
    hf, tok = model.base.model, model.tokenizer
    texts = ["a short one", "a much longer input with several different words in it"]
    healthy = encoder_position_cosine(hf, tok, texts, batch_size=1)
    assert healthy == pytest.approx(encoder_position_cosine(hf, tok, texts, batch_size=2), abs=1e-5)
    assert healthy < 0.8
    # Every position the same vector (a constant added after the final norm swamps the rest): cosine 1.
    hook = hf.get_encoder().final_layer_norm.register_forward_hook(lambda m, i, o: o * 1e-4 + 1.0)
    try:
        assert encoder_position_cosine(hf, tok, texts, batch_size=2) == pytest.approx(1.0, abs=1e-4)
    finally:
        hook.remove()


# --- the stream and the presets ------------------------------------------------------------------------


def test_stream_is_deterministic_and_keeps_the_mixture(data_dir: Path, tiny_run: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_run / "tokenizer"))
    preset = load_preset("tiny")
    corpus = prepare_corpus(tokenizer, preset.data, data_dir)
    first = MixtureStream(corpus, preset.data, preset.mixture, seed=0)
    second = MixtureStream(corpus, preset.data, preset.mixture, seed=0)
    for step in (7, 0, 3):  # any order: a batch depends on (seed, step) only
        a, b = first.step_batches(step), second.step_batches(step)
        assert [x.source for x in a] == ["span_corruption", "prefix_lm", "supervised"]
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(x.input_ids, y.input_ids) and np.array_equal(x.labels, y.labels)
    span = first.step_batches(0)[0]
    assert span.input_ids.shape[1] == preset.data.span_inputs_length
    assert (span.input_ids[:, -1] == corpus.eos_id).all()
    # Over a round every supervised example of the pool is used once; tasks are mixed.
    rounds = [first.step_batches(s)[-1] for s in range(preset.mixture.round_steps)]
    assert sum(len(b.input_ids) for b in rounds) == sum(first.per_round.values())
    sources = {tuple(row[row != corpus.pad_id][:2]) for b in rounds for row in b.input_ids}
    assert len(sources) >= 2  # "translate French ..." and "graph to text ..." prefixes both present


@pytest.mark.parametrize("name", ["tiny", "cpu", "gpu"])
def test_presets_load(name: str) -> None:
    preset = load_preset(name)
    assert preset.name == name and preset.why
    assert set(preset.mixture.normalised()) <= {"span_corruption", "prefix_lm", "fr-en", "webnlg", "dart"}


def test_preset_errors(tmp_path: Path) -> None:
    with pytest.raises(PresetError, match="unknown keys"):
        load_preset("tiny", ["train.learning_rate=0.1"])
    with pytest.raises(PresetError, match="unknown sources"):
        load_preset("tiny", ['mixture.weights={"e2e": 1.0}'])
    with pytest.raises(PresetError, match="not found"):
        load_preset("nope")
    assert load_preset("tiny", ["train.lr=0.5"]).train.lr == 0.5
    assert sorted(p.stem for p in PRESET_DIR.glob("*.json")) == ["cpu", "gpu", "tiny"]
