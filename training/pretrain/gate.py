"""Run the gate on a saved base folder: load it as the server does, score it (``eval.py``), record
the verdict, and say loudly when the base fails (removing its weights unless told to keep them).
The caller raises ``GateFailedError`` once its records are written."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from adapters.base import load_base
from training.pretrain.config import PretrainPreset
from training.pretrain.eval import evaluate_base, gate_verdict
from training.pretrain.loop import RunLog
from training.pretrain.tokenizer import check_roundtrip


def run_gate(
    folder: Path,
    preset: PretrainPreset,
    data_dir: str | Path | None,
    device: torch.device,
    runlog: RunLog,
    record: dict[str, Any],
    keep_weights: bool,
) -> bool:
    """Score the base in `folder`; fills record["scores"], ["fingerprint"], ["gate"] (with the reasons
    it failed). Returns passed."""
    base = load_base(folder, device=str(device))
    scores = evaluate_base(base.model, base.tokenizer, preset.data, preset.eval, data_dir)
    samples = scores["samples"]["fr-en"] + scores["samples"]["webnlg"]
    texts = [s["input"] for s in samples] + [s["reference"] for s in samples]
    roundtrip = check_roundtrip(base.tokenizer, texts)
    gate = preset.eval.gate
    passed, reasons = gate_verdict(scores, gate)
    record["scores"] = scores
    record["fingerprint"] = base.fingerprint
    record["gate"] = {
        "passed": passed,
        "reasons": reasons,
        "thresholds": gate.__dict__,
        "tokenizer_roundtrip_failures": len(roundtrip),
    }
    runlog("eval", **{k: v for k, v in scores.items() if k != "samples"})
    for kind, rows in scores["samples"].items():
        for row in rows:
            runlog("sample", kind=kind, **row)
    if passed:
        runlog("gate", passed=True)
        return True
    banner = "GATE FAILED: " + "; ".join(reasons)
    if (
        scores["distinct_outputs"] < gate.min_distinct
        or scores["input_gain_nats"] < gate.min_input_gain
        or scores["encoder_position_cosine"] > gate.max_encoder_cosine
    ):
        banner += " -- THE BASE IGNORES ITS INPUT: do not ship it"
        record["gate"]["ignores_input"] = True
    runlog("gate_failed", passed=False, reasons=reasons, message=banner)
    print("\n" + "!" * 80 + f"\n{banner}\n" + "!" * 80, file=sys.stderr)
    if not keep_weights:
        for path in folder.glob("model*.safetensors*"):
            path.unlink()
        record["gate"]["weights_removed"] = True
        print("the weights were removed; rerun with --keep-on-gate-failure to keep them", file=sys.stderr)
    return False
