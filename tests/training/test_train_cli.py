"""`inputtune train|eval` (``training/cli.py`` through ``server/cli/main.py``): end to end and errors."""

from __future__ import annotations

import json

import pytest

from adapters import (
    AdaptedModel,
    GenerationParams,
)
from adapters.testing import build_random_base, save_base
from server.cli.main import main
from tests.training.test_train_smoke import reverse_task, write_jsonl
from training.data import load_user_files
from training.evaluate import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/training/conftest.py


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    save_base(build_random_base("t5", "tiny", seed=0), root / "base")
    write_jsonl(root / "train.jsonl", reverse_task(64))
    write_jsonl(root / "dev.jsonl", reverse_task(5, seed=1))
    write_jsonl(root / "test.jsonl", reverse_task(6, seed=2))
    return root


def _train(files, out, *extra):
    return main(
        [
            "train",
            "--model",
            str(files / "base"),
            "--train-file",
            str(files / "train.jsonl"),
            "--out",
            str(out),
            "--max-steps",
            "12",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--no-progress",
            "--max-new-tokens",
            "6",
            "--prompt-length",
            "4",
            *extra,
        ]
    )


def test_train_then_eval_through_the_cli(files, tmp_path, capsys):
    out = tmp_path / "rev.safetensors"
    code = _train(
        files,
        out,
        "--dev-file",
        str(files / "dev.jsonl"),
        "--eval-every",
        "6",
        "--test-file",
        str(files / "test.jsonl"),
        "--save-every",
        "6",
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}: 12 steps (max_steps)" in printed and "bleu" in printed
    records = [
        json.loads(line) for line in (tmp_path / "rev.safetensors.train_log.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in records if "dev" in r] == [6, 12]
    assert any("test" in r for r in records)
    assert all(
        {"loss", "lr", "tokens_per_s"} <= set(r) for r in records if "dev" not in r and "test" not in r
    )
    assert (tmp_path / "rev.safetensors.ckpt" / "state.pt").is_file()

    report_path = tmp_path / "report.json"
    code = main(
        [
            "eval",
            "--model",
            str(files / "base"),
            "--adapter",
            str(out),
            "--data-file",
            str(files / "test.jsonl"),
            "--max-new-tokens",
            "6",
            "--device",
            "cpu",
            "--out",
            str(report_path),
            "--batch-size",
            "4",
        ]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    assert set(report["scores"]) == {"bleu", "chrf", "ter", "rougeL"}
    assert report["adapter"]["config"]["kind"] == "input-tuning"
    assert report["adapter"]["metadata"]["method"] == "input-tuning"
    assert report["num_items"] == 6 and len(report["examples"]) == 5
    assert {"load_s", "decode_s", "items_per_s"} <= set(report["timing"])
    # the CLI scores exactly what the function API scores for the served adapter
    model = AdaptedModel.load(files / "base", device="cpu", num_slots=1)
    model.load_adapter_file(1, out)
    direct = evaluate(
        model, 1, load_user_files(files / "test.jsonl").items, GenerationParams(max_new_tokens=6)
    )
    assert report["scores"] == direct["scores"]
    assert "bleu" in capsys.readouterr().out


def test_fine_tuned_folder_evaluates_as_the_model(files, tmp_path):
    out = tmp_path / "ft"
    assert _train(files, out, "--method", "fine-tuning", "--lr", "1e-3") == 0
    report_path = tmp_path / "report.json"
    code = main(
        [
            "eval",
            "--model",
            str(out),
            "--data-file",
            str(files / "test.jsonl"),
            "--max-new-tokens",
            "4",
            "--device",
            "cpu",
            "--out",
            str(report_path),
        ]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["adapter"] is None and report["model_metadata"]["method"] == "fine-tuning"


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"source": "abc"}', "line 2: field 'target' is missing"),
        ('{"source": "abc", "target": 3}', "line 2: field 'target' must be a string, got int"),
        ("not json", "line 2: not valid JSON"),
    ],
)
def test_bad_user_data_is_exit_code_2_with_the_loaders_message(files, tmp_path, capsys, line, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"source": "a", "target": "b"}\n' + line + "\n")
    code = main(
        [
            "train",
            "--model",
            str(files / "base"),
            "--train-file",
            str(bad),
            "--out",
            str(tmp_path / "x.safetensors"),
            "--device",
            "cpu",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("inputtune: error: ") and message in err and str(bad) in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eval-every", "5"], "--eval-every needs dev data"),
        (["--out", "x.bin"], "must be an adapter file ending in .safetensors"),
        (["--lr-prompt", "0"], "lr-prompt must be > 0"),
        (["--task", "e2e"], "pass either --task or --train-file"),
    ],
)
def test_bad_options_are_exit_code_2(files, tmp_path, capsys, args, message):
    code = main(
        [
            "train",
            "--model",
            str(files / "base"),
            "--train-file",
            str(files / "train.jsonl"),
            "--out",
            str(tmp_path / "x.safetensors"),
            "--device",
            "cpu",
            *args,
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err


def test_eval_of_a_missing_file_is_exit_code_2(files, tmp_path, capsys):
    code = main(
        [
            "eval",
            "--model",
            str(files / "base"),
            "--data-file",
            str(tmp_path / "none.jsonl"),
            "--device",
            "cpu",
        ]
    )
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_training_imports_without_server_web_stack_or_rouge():
    """The offline GPU machine has no fastapi/pydantic/uvicorn/rouge-score: training must not need them."""
    import subprocess
    import sys

    blocked = ("server", "fastapi", "pydantic", "pydantic_settings", "uvicorn", "rouge_score")
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "import training.cli, training.trainer, training.evaluate, training.common.metrics, training.bench\n"
        "from training.common.metrics import corpus_scores\n"
        "assert corpus_scores(['a b'], [['a b']])['rougeL'] is None\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
