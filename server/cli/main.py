"""The ``inputtune`` command: a table of subcommands, each in the module that owns it.

Every command module has an ``add_arguments(parser)`` and a ``run(args) -> int`` (or the names the
table gives). Commands raise typed errors; ``main`` prints them in one style and maps them to the
exit codes of ``errors.py``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass

from .errors import EPILOG, error, exit_code


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    help: str
    add_arguments: str = "add_arguments"
    run: str = "run"
    formatter: type[argparse.HelpFormatter] = argparse.HelpFormatter


COMMANDS = (
    Command(
        "serve",
        "server.cli.serve",
        "the HTTP server (POST /generate?adapter=NAME)",
        formatter=argparse.ArgumentDefaultsHelpFormatter,
    ),
    Command(
        "generate", "server.cli.generate", "one-shot generation with one adapter, one output line per input"
    ),
    Command(
        "train",
        "training.cli",
        "train an adapter (input-/prompt-tuning) or fine-tune a base",
        "add_train_arguments",
        "run_train",
    ),
    Command(
        "eval",
        "training.cli",
        "decode and score an adapter or a model on a task split",
        "add_eval_arguments",
        "run_eval",
    ),
    Command("pretrain", "training.pretrain.cli", "pretrain a small T5 base from scratch (the demo base)"),
    Command("adapters", "server.cli.adapters", "adapter files: inspect, import, synthesize, activation"),
    Command(
        "cluster",
        "server.cli.cluster",
        "serve on Ray Serve: replicas routed by adapter (pip install 'inputtune[cluster]')",
    ),
    Command(
        "familiarity",
        "server.cli.familiarity",
        "how familiar inputs are to a base's pretraining corpus (average corpus bigram frequency)",
    ),
    Command("loadtest", "server.cli.loadtest", "open-loop load test against a running server"),
    Command("bench", "server.cli.bench", "benchmarks that print figures"),
    Command(
        "serve-naive",
        "server.cli.serve",
        "baseline server: one request at a time, plain transformers generate (for benchmarks)",
        "add_naive_arguments",
        "run_naive",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inputtune", description="Serve and train Input-Tuning adapters.", epilog=EPILOG
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        module = importlib.import_module(command.module)
        p = sub.add_parser(command.name, help=command.help, epilog=EPILOG, formatter_class=command.formatter)
        getattr(module, command.add_arguments)(p)
        p.set_defaults(_run=(command.module, command.run))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor loading bars drown the one start-up line
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per load-test request is noise
    module, run = args._run
    try:
        return getattr(importlib.import_module(module), run)(args)
    except (Exception, KeyboardInterrupt) as e:
        code = exit_code(e)
        if code is None:
            raise
        if not isinstance(e, KeyboardInterrupt):
            error(e)
        return code


if __name__ == "__main__":
    sys.exit(main())
