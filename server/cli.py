"""The ``inputtune`` command line. Each subcommand lives in its own module; this file only parses."""

from __future__ import annotations

import argparse
import logging
import sys

from adapters import AdapterError, BaseModelError, InputTooLongError


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", help="base model folder (Hugging Face layout) or hub id; default: the embedded demo"
    )
    p.add_argument(
        "--adapter-dir", help="folder of <name>.safetensors adapters; default: the demo's adapters"
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16 (GPU only)")


def _add_generation_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--do-sample", action="store_true")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inputtune", description="Serve and train Input-Tuning adapters.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="one-shot generation with one adapter, one output line per input")
    _add_model_options(gen)
    gen.add_argument(
        "--adapter", help="adapter name in --adapter-dir (or a .safetensors path); none = base model"
    )
    _add_generation_options(gen)
    gen.add_argument("texts", nargs="+", help="input texts; '-' reads one input per line from stdin")

    serve = sub.add_parser(
        "serve",
        help="the HTTP server (POST /generate?adapter=NAME)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    from .commands.serve import add_serve_arguments

    add_serve_arguments(serve)

    naive = sub.add_parser(
        "serve-naive",
        help="baseline server: one request at a time, plain transformers generate (for benchmarks)",
    )
    _add_model_options(naive)
    naive.add_argument("--host", default="127.0.0.1")
    naive.add_argument("--port", type=int, default=8001)

    from training.pretrain import add_pretrain_arguments
    from training.train_cli import add_eval_arguments, add_train_arguments

    add_train_arguments(
        sub.add_parser("train", help="train an adapter (input-/prompt-tuning) or fine-tune a base")
    )
    add_eval_arguments(sub.add_parser("eval", help="decode and score an adapter or a model on a task split"))
    add_pretrain_arguments(
        sub.add_parser("pretrain", help="pretrain a small T5 base from scratch (the demo base)")
    )

    load = sub.add_parser("loadtest", help="open-loop load test against a running server")
    from .commands.loadtest import add_loadtest_arguments

    add_loadtest_arguments(load)

    bench = sub.add_parser("bench", help="benchmarks that print figures")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    batching = bench_sub.add_parser(
        "batching", help="mixed-adapter batches vs single-adapter, sequential, naive"
    )
    batching.add_argument("--model", help="base folder; default: a random t5-small-shaped model")
    batching.add_argument(
        "--shape",
        default="t5-small",
        help="random base shape when no --model (tiny, t5-small, t5-base, t5-large)",
    )
    batching.add_argument("--device", default="cpu")
    batching.add_argument("--dtype", default="auto")
    batching.add_argument("--batch-size", "-B", type=int, default=32)
    batching.add_argument(
        "--adapters",
        "-K",
        type=int,
        nargs="+",
        default=[8, 32],
        help="numbers of distinct adapters to mix (one run each)",
    )
    batching.add_argument("--prompt-length", type=int, default=16)
    batching.add_argument("--new-tokens", type=int, default=16, help="tokens generated per row (min = max)")
    batching.add_argument(
        "--input-chars", type=int, default=96, help="approximate input length in characters"
    )
    batching.add_argument(
        "--repeats", type=int, default=5, help="timed repeats per variant (median reported)"
    )
    batching.add_argument("--path", choices=["fast", "reference"], default="fast")
    batching.add_argument("--skip-naive", action="store_true", help="skip the slow B single-row calls")
    batching.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    cold = bench_sub.add_parser("coldload", help="disk -> device latency of cold adapters")
    cold.add_argument("--model", help="base folder; default: a random model of --shape")
    cold.add_argument("--shape", default="t5-small")
    cold.add_argument("--device", default="cpu")
    cold.add_argument("--dtype", default="auto")
    cold.add_argument("--count", type=int, default=50)
    cold.add_argument("--prompt-length", type=int, default=16)
    cold.add_argument("--json", action="store_true")

    report = bench_sub.add_parser("report", help="regenerate docs/performance.md (load tests over HTTP)")
    report.add_argument("--out", default="docs/performance.md")
    report.add_argument("--work-dir", default="runs/perf", help="base, adapters and server logs")
    report.add_argument("--shape", default="t5-small", help="random base shape")
    report.add_argument("--adapter-counts", default="1,16,200,2000")
    report.add_argument("--duration", type=float, default=20.0, help="seconds of arrivals per measurement")
    report.add_argument("--overload", type=float, default=40.0, help="offered req/s for saturation runs")
    report.add_argument("--batch-size", type=int, default=32, help="server max_batch_size")
    report.add_argument("--new-tokens", type=int, default=16)
    report.add_argument("--input-chars", type=int, default=96)
    report.add_argument("--prompt-length", type=int, default=16)
    report.add_argument("--unloaded-requests", type=int, default=20)
    report.add_argument("--keep-work", action="store_true")

    adapters = sub.add_parser("adapters", help="adapter files: inspect, import, synthesize")
    adapters_sub = adapters.add_subparsers(dest="adapters_command", required=True)
    imp = adapters_sub.add_parser(
        "import-peft", help="convert a PEFT prompt-tuning folder to an adapter file"
    )
    imp.add_argument("folder")
    imp.add_argument("--out", required=True, help="output .safetensors path")
    imp.add_argument(
        "--model", help="base the prompt belongs to (records its fingerprint); default: none recorded"
    )
    synth = adapters_sub.add_parser("synth", help="write N random adapters for a base (for speed tests)")
    synth.add_argument(
        "--base", required=True, help="base model folder (its fingerprint goes into the files)"
    )
    synth.add_argument("--count", type=int, required=True)
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--prefix", default="synth-")
    synth.add_argument("--prompt-length", type=int, default=16)
    synth.add_argument("--kind", choices=["input-tuning", "prompt-tuning"], default="input-tuning")
    synth.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16", help="file dtype")
    show = adapters_sub.add_parser(
        "inspect", help="validate an adapter file and print its config and metadata"
    )
    show.add_argument("path")
    show.add_argument("--model", help="also check compatibility with this base")
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
    try:
        if args.command == "generate":
            from .commands import generate

            return generate.run(args)
        if args.command == "serve":
            from .commands import serve as serve_command

            return serve_command.run(args)
        if args.command == "serve-naive":
            from .commands import serve as serve_command

            return serve_command.run_naive(args)
        if args.command in ("train", "eval", "pretrain"):
            from training import pretrain, train_cli

            runner = {
                "train": train_cli.run_train,
                "eval": train_cli.run_eval,
                "pretrain": pretrain.run_pretrain,
            }
            return runner[args.command](args)
        if args.command == "loadtest":
            from .commands import loadtest

            return loadtest.run(args)
        if args.command == "bench":
            if args.bench == "report":
                from .bench import report as report_command

                return report_command.run(args)
            if args.bench == "coldload":
                from .bench import coldload

                return coldload.run(args)
            from .bench import batching

            return batching.run(args)
        if args.command == "adapters":
            from .commands import adapter_files

            return adapter_files.run(args)
    except (AdapterError, BaseModelError, InputTooLongError, ValueError) as e:
        print(f"inputtune: error: {e}", file=sys.stderr)
        return 2
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
