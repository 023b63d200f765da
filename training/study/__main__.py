"""``python -m training.study``: run the study (resumable) and regenerate docs/study.md from its JSON.

    python -m training.study all     # runs what is missing (within --budget-min), then the analyses and the report
    python -m training.study runs    # only the training runs (PT / IT / FT per task), 2 workers, nice'd
    python -m training.study analyse # familiarity per task, paired bootstraps, adapter change vs frequency
    python -m training.study throughput  # part 4's serving cost: `inputtune bench prompt-lengths` (3 min)
    python -m training.study report  # docs/study.md and plots from docs/study/*.json only (seconds)

A finished run leaves docs/study/runs/<task>.<method>.json and is never redone, so an interrupted
study resumes where it stopped. See docs/study.md for the budget and how long each part takes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn

from training.study.runs import METHODS, RunSettings, RunSpec, add_dev, run_one, run_path, study_plan
from training.study.tasks import STUDY_TASKS

RESULTS = Path("docs/study")


def _settings_args(p: argparse.ArgumentParser) -> None:
    defaults = RunSettings(model="demo/base", work_dir="runs/study")
    for f in dataclasses.fields(RunSettings):
        value = getattr(defaults, f.name)
        kind = type(value) if value is not None else str
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=value)


def _settings(args: argparse.Namespace) -> RunSettings:
    return RunSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RunSettings)})


def _claim(lock: Path) -> bool:
    """Take the run's lock file (None if another live process holds it), so that two runners started
    side by side never train the same run."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(lock.read_text() or "0"), 0)
            return False  # its owner is alive
        except (ValueError, ProcessLookupError):
            lock.unlink(missing_ok=True)  # a stale lock from a killed run
            return _claim(lock)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def _usage(message: str) -> NoReturn:
    print(f"python -m training.study: error: {message}", file=sys.stderr)
    raise SystemExit(2)  # bad input, as the `inputtune` commands exit


def _spec(args: argparse.Namespace) -> RunSpec:
    lr = None
    if args.lr:
        try:
            rates = json.loads(args.lr)
        except json.JSONDecodeError as e:
            _usage(f"--lr: not JSON ({e}): give e.g. '{{\"lr_prompt\": 0.1}}'")
        if not isinstance(rates, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float) and v > 0 for k, v in rates.items()
        ):
            _usage(f"--lr: a JSON object of positive learning rates by name, got {args.lr}")
        lr = tuple(rates.items())
    return RunSpec(args.task, args.method, args.prompt_length_override, lr)


def _pending(spec: RunSpec, results: Path) -> str | None:
    """What a run still needs: "run", "dev" (a finished run without the dev scores its sweep needs),
    or None."""
    path = run_path(results, spec.task, spec.method, spec.tag)
    if not path.is_file():
        return "run"
    if spec.needs_dev and "dev" not in json.loads(path.read_text()):
        return "dev"
    return None


def _one(args: argparse.Namespace) -> int:
    spec, results = _spec(args), Path(args.results)
    need = _pending(spec, results)
    if need is None:
        print(f"{spec.name}: already done")
        return 0
    lock = Path(args.work_dir) / f"{spec.name}.lock"
    if not _claim(lock):
        print(f"{spec.name}: another runner has it")
        return 0
    try:
        record = add_dev(spec, _settings(args), results) if need == "dev" else None
        if record is None:  # not trained yet, or its adapter is gone: (re)train it
            record = run_one(spec, _settings(args), results)
    finally:
        lock.unlink(missing_ok=True)
    dev = f", dev chrF {record['dev']['scores']['chrf']:.2f}" if "dev" in record else ""
    print(f"{spec.name}: BLEU {record['scores']['bleu']:.2f}{dev}, train {record['train_s']}s")
    return 0


def _runs(args: argparse.Namespace) -> int:
    """Every missing (task, method) run, ``--workers`` at a time, each a nice'd single-threaded process;
    no new run starts after ``--budget-min`` minutes."""
    results = Path(args.results)
    todo = [spec for spec in study_plan(tuple(args.tasks or STUDY_TASKS)) if _pending(spec, results)]
    started = time.monotonic()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log_dir = Path(args.work_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    def launch(spec: RunSpec) -> str:
        if time.monotonic() - started > 60 * args.budget_min:
            return f"{spec.name}: skipped (budget of {args.budget_min} min spent)"
        argv = [sys.executable, "-m", "training.study", "one", "--task", spec.task, "--method", spec.method]
        if spec.prompt_length is not None:
            argv += ["--prompt-length-override", str(spec.prompt_length)]
        if spec.lr is not None:
            argv += ["--lr", json.dumps(dict(spec.lr))]
        for f in dataclasses.fields(RunSettings):
            value = getattr(args, f.name)
            if value is not None:
                argv += ["--" + f.name.replace("_", "-"), str(value)]
        argv += ["--results", str(results)]
        t0 = time.monotonic()
        with (log_dir / f"{spec.name}.log").open("a") as log:  # "a": a second runner may find it taken
            code = subprocess.call(["nice", "-n", "19", *argv], stdout=log, stderr=subprocess.STDOUT, env=env)
        return f"{spec.name}: exit {code} after {time.monotonic() - t0:.0f}s"

    with ThreadPoolExecutor(args.workers) as pool:
        for line in pool.map(launch, todo):
            print(line, flush=True)
    elapsed = time.monotonic() - started
    print(f"runs: {elapsed:.0f}s for {len(todo)} runs")
    timing = results / "timing.json"
    sessions = json.loads(timing.read_text())["sessions"] if timing.is_file() else []
    sessions.append(
        {
            "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "wall_s": round(elapsed),
            "workers": args.workers,
            "runs_tried": len(todo),
        }
    )
    timing.write_text(json.dumps({"sessions": sessions}, indent=1) + "\n")
    return 0


def _throughput(args: argparse.Namespace) -> None:
    """Part 4's serving figures, by the benchmark command a user would run (training/ never imports the
    server; it runs the CLI, as a user does)."""
    out = Path(args.results) / "prompt_throughput.json"
    argv = [sys.executable, "-m", "server.cli", "bench", "prompt-lengths", "--model", args.model, "--json", str(out),
            "--rows", str(args.rows), "--new-tokens", str(args.new_tokens), "--repeats", str(args.repeats)]  # fmt: skip
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    code = subprocess.run(argv).returncode
    if code:
        raise SystemExit(f"`inputtune bench prompt-lengths` failed (exit {code}); its message is above")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.study", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    stages = {}
    for name in ("all", "runs", "one", "analyse", "throughput", "report"):
        p = sub.add_parser(name)
        p.add_argument("--results", default=str(RESULTS))
        if name != "report":
            _settings_args(p)
        if name in ("all", "runs"):
            p.add_argument("--workers", type=int, default=2)
            p.add_argument("--budget-min", type=float, default=90.0)
            p.add_argument("--tasks", nargs="*", choices=STUDY_TASKS)
        if name in ("throughput", "all"):
            p.add_argument("--rows", type=int, default=32, help="concurrent requests per burst")
            p.add_argument("--new-tokens", type=int, default=32, help="tokens every request generates")
            p.add_argument("--repeats", type=int, default=7)
        if name == "one":
            p.add_argument("--task", required=True)
            p.add_argument("--method", required=True, choices=sorted(METHODS))
            p.add_argument("--prompt-length-override", type=int)
            p.add_argument(
                "--lr", help='learning rates as JSON, e.g. {"lr_prompt": 0.1} (default: the method\'s)'
            )
        stages[name] = p
    args = parser.parse_args(argv)
    if args.stage == "one":
        return _one(args)
    if args.stage in ("runs", "all"):
        _runs(args)
    if args.stage in ("analyse", "all"):
        from training.study.analyse import analyse

        analyse(args)
    if args.stage in ("throughput", "all"):
        _throughput(args)
    if args.stage in ("report", "all"):
        from training.study.report import write_report

        write_report(Path(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
