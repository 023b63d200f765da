"""`inputtune bench engines`: the frozen model's own decode speed, against the fastest T5 engine.

On the same token ids (E2E test sources, the plain base: no adapter, since CTranslate2 cannot apply
one), greedy, exactly ``--new-tokens`` new tokens per row, it times:
  hf          transformers' ``generate``
  static      inputtune's static batches (``AdaptedModel.generate``)
  continuous  inputtune's continuous batching (``ContinuousBatch``: one admission, then steps)
  compiled    the same with the decoder step through torch.compile (``--compile-decoder``; CUDA
              graphs on a GPU); not in the default list: compiling takes minutes
  ct2         CTranslate2 (the ``bench`` extra; the base is converted once with
              ``ct2-transformers-converter``, offline)
  http        ``inputtune serve`` (continuous, its defaults) in a process of its own, over HTTP:
              each batch is that many concurrent requests of one input (``POST /generate``, token
              ids from ``details``); what the serving layer keeps of the in-process speed. Its
              client runs in this process, on the same cores.
for each rows-per-batch size, every input run once per repeat in batches of that size. Engines
alternate within each repeat (drift on a noisy machine hits all alike); tokens/s are medians.
Every engine's tokens are compared with ``hf``'s, row by row. For the continuous path it also
counts the ATen operator calls of one decoder step and splits a generation into its phases
(admission, decoder steps, choosing tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from adapters import AdaptedModel, GenerationParams
from adapters.decoding import ContinuousBatch

from ..errors import LoadTestError
from ..workload import load_bench_base

ENGINES = ("hf", "static", "continuous", "compiled", "ct2", "http")
DEFAULT_ENGINES = ("hf", "static", "continuous", "ct2", "http")
Run = Callable[[list[list[int]]], list[list[int]]]  # token id rows -> generated token id rows
Pass = Callable[[list[list[list[int]]]], tuple[list[list[int]], float]]  # batches -> (tokens, seconds)


def in_process(run: Run, device: torch.device) -> Pass:
    """A pass of an engine of this process: every batch in turn, timed as a whole."""

    def run_pass(chunks: list[list[list[int]]]) -> tuple[list[list[int]], float]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = [tokens for chunk in chunks for tokens in run(chunk)]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out, time.perf_counter() - start

    return run_pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="base folder (default: the embedded demo's base)")
    parser.add_argument("--data-dir", help="the shared data folder (E2E test sources)")
    parser.add_argument("--inputs", type=int, default=256, help="E2E test sources to decode")
    parser.add_argument(
        "--random-inputs",
        type=int,
        metavar="TOKENS",
        help="decode --inputs random token id rows of this length instead of E2E sources (where the "
        "data is not on the machine, e.g. a GPU box; said in the output)",
    )
    parser.add_argument("--rows", default="1,8,32,64", help="rows per batch, comma-separated")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", help="float32 | bfloat16 (all engines alike)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--engines", default=",".join(DEFAULT_ENGINES), help=f"some of {', '.join(ENGINES)}")
    parser.add_argument("--ct2-dir", help="a converted CTranslate2 model (default: convert the base)")
    parser.add_argument(
        "--ct2-threads",
        default="",
        help="CTranslate2's intra-op threads to try, comma-separated (default: 1 and torch's count); "
        "each is an engine ct2@N and the ratios are to the fastest at each size",
    )
    parser.add_argument(
        "--prefill",
        default="",
        help="also measure chunked prefill: token budgets per step to try, comma-separated, 0 = all "
        "at once (e.g. 0,1024,256): the running rows' longest pause while a burst of long inputs joins",
    )
    parser.add_argument("--json", help="also write the figures here")


# ----------------------------------------------------------------------------------- engines


def hf_engine(model: AdaptedModel, new_tokens: int) -> Run:
    base = model.base.model
    pad = model.tokenizer.pad_token_id

    @torch.inference_mode()
    def run(rows: list[list[int]]) -> list[list[int]]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = torch.tensor(r)
            mask[b, : len(r)] = 1
        out = base.generate(
            input_ids=ids.to(model.base.device),
            attention_mask=mask.to(model.base.device),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            num_beams=1,
        )
        return [seq[1:].tolist() for seq in out]

    return run


def static_engine(model: AdaptedModel, new_tokens: int) -> Run:
    params = GenerationParams(max_new_tokens=new_tokens, min_new_tokens=new_tokens)

    def run(rows: list[list[int]]) -> list[list[int]]:
        return [o.token_ids for o in model.generate(rows, [0] * len(rows), params)]

    return run


def continuous_engine(model: AdaptedModel, new_tokens: int, compile: bool = False) -> Run:
    params = GenerationParams(max_new_tokens=new_tokens, min_new_tokens=new_tokens)

    def run(rows: list[list[int]]) -> list[list[int]]:
        batch: ContinuousBatch[int] = ContinuousBatch(model, compile=compile)
        batch.admit(list(range(len(rows))), rows, [0] * len(rows), [params] * len(rows))
        done: dict[int, list[int]] = {}
        while len(batch):
            done.update((key, out.token_ids) for key, out in batch.step())
        return [done[i] for i in range(len(rows))]

    return run


def _ct2_worker(
    connection, folder: str, new_tokens: int, compute_type: str, device: str, threads: int
) -> None:
    """CTranslate2 in a process of its own: it brings its own OpenMP runtime, whose threads, beside
    torch's in one process, made every engine (itself included) 3-4x slower on 2 cores."""
    import ctranslate2
    from transformers import AutoTokenizer

    translator = ctranslate2.Translator(
        folder, device=device, compute_type=compute_type, inter_threads=1, intra_threads=threads
    )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    while (chunks := connection.recv()) is not None:
        start = time.perf_counter()
        out = []
        for rows in chunks:
            results = translator.translate_batch(
                [tokenizer.convert_ids_to_tokens(r) for r in rows],
                beam_size=1,
                max_decoding_length=new_tokens,
                min_decoding_length=new_tokens,
                max_batch_size=len(rows),
            )
            out += [tokenizer.convert_tokens_to_ids(r.hypotheses[0]) for r in results]
        connection.send((out, time.perf_counter() - start))


class Ct2Engine:
    """The CTranslate2 engine, served by a worker process (``_ct2_worker``); a pass is one message."""

    def __init__(self, folder: Path, new_tokens: int, dtype: str, device: str, threads: int) -> None:
        import importlib.util
        import multiprocessing

        if importlib.util.find_spec("ctranslate2") is None:
            raise LoadTestError("ct2 needs CTranslate2: pip install 'inputtune[bench]' (or leave ct2 out)")
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        device = "cuda" if device.startswith("cuda") else "cpu"
        self.process = context.Process(
            target=_ct2_worker,
            args=(child, str(folder), new_tokens, dtype, device, threads),
            daemon=True,
        )
        self.process.start()

    def run_pass(self, chunks: list[list[list[int]]]) -> tuple[list[list[int]], float]:
        self.connection.send(chunks)
        if not self.connection.poll(3600):
            raise LoadTestError("the CTranslate2 worker did not answer within an hour")
        return self.connection.recv()

    def close(self) -> None:
        self.connection.send(None)
        self.process.join(30)


class HttpEngine:
    """``inputtune serve`` of the same base in a process of its own; a pass sends each batch as that
    many concurrent one-input requests and waits for all of them before the next batch."""

    def __init__(
        self, model_dir: Path, texts: dict[tuple[int, ...], str], new_tokens: int, rows: int
    ) -> None:
        import tempfile

        from .report import INPUTTUNE, Server

        self.texts = texts
        self.new_tokens = new_tokens
        self.sizes_seen: set[int] = set()
        self.work = Path(tempfile.mkdtemp(prefix="inputtune-engines-"))
        (self.work / "adapters").mkdir()
        self.server = Server(INPUTTUNE, model_dir, self.work / "adapters", 1, rows, self.work / "server.log")
        self.server.__enter__()

    async def _batch(self, client, rows: list[list[int]], details: bool) -> list[list[int]]:
        parameters = {
            "max_new_tokens": self.new_tokens,
            "min_new_tokens": self.new_tokens,
            "details": details,
        }

        async def one(row: list[int]) -> list[int]:
            r = await client.post(
                "/generate", json={"inputs": self.texts[tuple(row)], "parameters": parameters}
            )
            if r.status_code != 200:
                raise LoadTestError(f"the server answered {r.status_code}: {r.text[:300]}")
            return [t["id"] for t in r.json()["details"]["tokens"]] if details else []

        return list(await asyncio.gather(*(one(row) for row in rows)))

    def run_pass(self, chunks: list[list[list[int]]]) -> tuple[list[list[int]], float]:
        """Token ids (``details``) on the first pass at each batch size, the one whose tokens are
        compared; the timed passes ask for the text alone (the in-process engines make no per-token
        text either)."""
        import httpx

        details = len(chunks[0]) not in self.sizes_seen
        self.sizes_seen.add(len(chunks[0]))

        async def all_chunks():
            limits = httpx.Limits(max_connections=max(len(c) for c in chunks))
            async with httpx.AsyncClient(base_url=self.server.url, timeout=600, limits=limits) as client:
                start = time.perf_counter()
                out = [tokens for chunk in chunks for tokens in await self._batch(client, chunk, details)]
                return out, time.perf_counter() - start

        return asyncio.run(all_chunks())

    def close(self) -> None:
        self.server.__exit__(None, None, None)
        shutil.rmtree(self.work, ignore_errors=True)


def convert_for_ct2(model_dir: Path, out: Path, dtype: str) -> Path:
    """The base converted to CTranslate2 (weights kept in ``dtype``), once per output folder."""
    if (out / "model.bin").is_file():
        return out
    beside = Path(sys.executable).parent / "ct2-transformers-converter"  # the same environment's
    converter = str(beside) if beside.is_file() else shutil.which("ct2-transformers-converter")
    if converter is None:
        raise LoadTestError("ct2-transformers-converter not found: pip install 'inputtune[bench]'")
    command = [converter, "--model", str(model_dir), "--output_dir", str(out), "--quantization", dtype]
    command += ["--copy_files", "tokenizer.json", "tokenizer_config.json"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise LoadTestError(f"converting the base for CTranslate2 failed:\n{done.stderr[-2000:]}")
    return out


# ----------------------------------------------------------------------------------- measures


class OpCounter(TorchDispatchMode):
    """Counts the ATen operator calls made while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def step_profile(model: AdaptedModel, rows: list[list[int]], new_tokens: int) -> dict:
    """Op calls of one decoder step, and a continuous generation split into its phases."""
    params = GenerationParams(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    sync = torch.cuda.synchronize if model.base.device.type == "cuda" else (lambda: None)
    batch: ContinuousBatch[int] = ContinuousBatch(model)
    sync()
    start = time.perf_counter()
    batch.admit(list(range(len(rows))), rows, [0] * len(rows), [params] * len(rows))
    sync()
    admission = time.perf_counter() - start
    decoder_time = 0.0
    real_step = batch.decoder.step

    def timed_step(*args, **kwargs):
        nonlocal decoder_time
        sync()
        t = time.perf_counter()
        out = real_step(*args, **kwargs)
        sync()
        decoder_time += time.perf_counter() - t
        return out

    batch.decoder.step = timed_step
    counter = OpCounter()
    with counter:
        batch.step()  # the first step, counted (and left out of the times)
    decoder_time = 0.0
    steps_start = time.perf_counter()
    steps = 0
    while len(batch):
        batch.step()
        steps += 1
    sync()
    stepping = time.perf_counter() - steps_start
    batch.decoder.step = real_step
    return {
        "rows": len(rows),
        "ops_per_step": sum(counter.calls.values()),
        "top_ops": counter.calls.most_common(8),
        "admission_ms": round(1000 * admission, 2),
        "step_ms": round(1000 * stepping / max(steps, 1), 3),
        "decoder_ms_per_step": round(1000 * decoder_time / max(steps, 1), 3),
        "choose_ms_per_step": round(1000 * (stepping - decoder_time) / max(steps, 1), 3),
    }


def prefill_profile(
    model: AdaptedModel, inputs: list[list[int]], budgets: list[int | None], running: int = 4, burst: int = 64
) -> list[dict]:
    """Chunked prefill, measured as the device thread runs it: ``running`` rows decode (64 tokens
    each); after 2 steps a burst of ``burst`` long inputs (4 sources joined) arrives and joins at most
    ``budget`` input tokens between two steps (None: all at once, as without chunked prefill). Per
    budget: the longest and the median pause between two tokens of the running rows (one loop of
    admission + step), and the time until the whole burst has joined."""
    params = GenerationParams(max_new_tokens=64, min_new_tokens=64)
    sync = torch.cuda.synchronize if model.base.device.type == "cuda" else (lambda: None)
    eos = model.tokenizer.eos_token_id
    long_rows = [
        [t for row in inputs[i : i + 4] for t in row if t != eos] + [eos] for i in range(0, 4 * burst, 4)
    ]
    long_rows = [r for r in long_rows if len(r) > 1][:burst]
    out = []
    for budget in budgets:
        batch: ContinuousBatch[int] = ContinuousBatch(model)
        batch.admit(list(range(running)), inputs[:running], [0] * running, [params] * running)
        batch.step()
        batch.step()
        waiting = list(range(len(long_rows)))
        pauses = []
        sync()
        start = time.perf_counter()
        joined_at = None
        while True:
            take, tokens = [], 0
            while waiting and (not take or budget is None or tokens + len(long_rows[waiting[0]]) <= budget):
                tokens += len(long_rows[waiting[0]])
                take.append(waiting.pop(0))
            t = time.perf_counter()
            if take:
                keys = [running + i for i in take]
                batch.admit(keys, [long_rows[i] for i in take], [0] * len(take), [params] * len(take))
            batch.step()
            sync()
            pauses.append(time.perf_counter() - t)
            if not waiting and joined_at is None:
                joined_at = time.perf_counter() - start
            if not waiting and not any(r.key < running for r in batch.rows):
                break  # the burst joined and the running rows finished
        out.append(
            {
                "budget_tokens": budget,
                "burst_rows": len(long_rows),
                "burst_tokens": sum(len(r) for r in long_rows),
                "worst_pause_ms": round(1000 * max(pauses), 1),
                "median_pause_ms": round(1000 * statistics.median(pauses), 1),
                "burst_joined_ms": round(1000 * (joined_at or 0.0), 1),
            }
        )
        print(json.dumps(out[-1]), flush=True)
    return out


def measure(
    engines: dict[str, Pass], inputs: list[list[int]], sizes: list[int], repeats: int, new_tokens: int
):
    """Per size: tokens/s per engine (median over repeats), agreement with hf, ratio to ct2."""
    results = []
    for size in sizes:
        chunks = [inputs[i : i + size] for i in range(0, len(inputs), size)]
        outputs = {name: run_pass(chunks)[0] for name, run_pass in engines.items()}  # warm-up, and tokens
        times: dict[str, list[float]] = {name: [] for name in engines}
        order = list(engines)
        for r in range(repeats):
            for name in order if r % 2 == 0 else reversed(order):  # alternate who goes first
                times[name].append(engines[name](chunks)[1])
        tokens = len(inputs) * new_tokens
        row: dict = {"rows": size, "tokens_per_s": {}, "agreement": {}}
        reference = outputs.get("hf")
        for name, values in times.items():
            row["tokens_per_s"][name] = round(tokens / statistics.median(values), 1)
            got = outputs[name]
            if not all(len(t) == new_tokens for t in got):
                raise LoadTestError(f"{name} did not make {new_tokens} tokens for every row")
            if reference is not None:
                same = sum(a == b for a, b in zip(got, reference, strict=True))
                row["agreement"][name] = round(same / len(got), 4)
        ct2 = [v for name, v in row["tokens_per_s"].items() if name.startswith("ct2")]
        if ct2:
            row["vs_ct2"] = {
                name: round(v / max(ct2), 3)
                for name, v in row["tokens_per_s"].items()
                if not name.startswith("ct2")
            }
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


def e2e_sources(data_dir: str | None, count: int) -> list[str]:
    from training.data import load_task

    sources = list(dict.fromkeys(item.source for item in load_task("e2e", "test", data_dir).items))[:count]
    if len(sources) < count:
        raise LoadTestError(f"the E2E test split has {len(sources)} sources, fewer than --inputs {count}")
    return sources


def e2e_inputs(model: AdaptedModel, data_dir: str | None, count: int) -> list[list[int]]:
    return model.encode(e2e_sources(data_dir, count))


def random_inputs(model: AdaptedModel, count: int, length: int) -> list[list[int]]:
    """``count`` rows of ``length`` random token ids (no special ids), each ending with EOS as an
    encoded source does; seeded, so every engine and run gets the same."""
    tokenizer = model.tokenizer
    special = set(tokenizer.all_special_ids)
    generator = torch.Generator().manual_seed(0)
    vocab = len(tokenizer)
    rows = []
    for _ in range(count):
        ids = [
            i
            for i in torch.randint(0, vocab, (2 * length,), generator=generator).tolist()
            if i not in special
        ]
        rows.append(ids[: length - 1] + [tokenizer.eos_token_id])
    return rows


def run(args: argparse.Namespace) -> int:
    from server.demo import DEMO_DIR

    model_dir = Path(args.model) if args.model else DEMO_DIR / "base"
    names = [e for e in args.engines.split(",") if e]
    unknown = set(names) - set(ENGINES)
    if unknown:
        raise LoadTestError(f"unknown engines {sorted(unknown)}: choose from {', '.join(ENGINES)}")
    base = load_bench_base(str(model_dir), "t5-small", args.device, args.dtype)
    model = AdaptedModel(base, num_slots=1)
    if args.random_inputs:
        inputs = random_inputs(model, args.inputs, args.random_inputs)
        source = f"random rows of {args.random_inputs} token ids"
    else:
        sources = e2e_sources(args.data_dir, args.inputs)
        inputs = model.encode(sources)
        source = "E2E test inputs"
    device = model.base.device
    makers: dict[str, Callable[[], Pass]] = {
        "hf": lambda: in_process(hf_engine(model, args.new_tokens), device),
        "static": lambda: in_process(static_engine(model, args.new_tokens), device),
        "continuous": lambda: in_process(continuous_engine(model, args.new_tokens), device),
        "compiled": lambda: in_process(continuous_engine(model, args.new_tokens, compile=True), device),
    }
    engines = {name: makers[name]() for name in names if name not in ("ct2", "http")}
    workers: list[Ct2Engine | HttpEngine] = []
    if "ct2" in names:
        folder = Path(args.ct2_dir) if args.ct2_dir else Path("runs/ct2") / f"{model_dir.name}-{args.dtype}"
        convert_for_ct2(model_dir, folder, args.dtype)
        threads = sorted({int(t) for t in args.ct2_threads.split(",") if t} or {1, torch.get_num_threads()})
        for n in threads:
            workers.append(Ct2Engine(folder, args.new_tokens, args.dtype, args.device, n))
            engines[f"ct2@{n}"] = workers[-1].run_pass
    sizes = [int(s) for s in args.rows.split(",")]
    if "http" in names:
        if args.random_inputs or args.dtype != "float32" or args.device != "cpu":
            raise LoadTestError("the http engine runs on E2E inputs, float32, on the CPU (leave it out)")
        texts = {tuple(ids): text for ids, text in zip(inputs, sources, strict=True)}
        workers.append(HttpEngine(model_dir, texts, args.new_tokens, max(sizes)))
        engines["http"] = workers[-1].run_pass
    print(
        f"{len(inputs)} {source}, {args.new_tokens} new tokens each, {args.dtype} on {base.device}, "
        f"{torch.get_num_threads()} torch threads; engines {', '.join(engines)}",
        flush=True,
    )
    try:
        results = measure(engines, inputs, sizes, args.repeats, args.new_tokens)
    finally:
        for worker in workers:
            worker.close()
    profiles = [step_profile(model, inputs[:size], args.new_tokens) for size in sizes]
    for p in profiles:
        print(json.dumps({k: v for k, v in p.items() if k != "top_ops"}), flush=True)
    budgets = [int(b) or None for b in args.prefill.split(",") if b]
    prefill = prefill_profile(model, inputs, budgets) if budgets else []
    if args.json:
        figures = {
            "model": str(model_dir),
            "dtype": args.dtype,
            "device": str(base.device),
            "threads": torch.get_num_threads(),
            "inputs": len(inputs),
            "source": source,
            "new_tokens": args.new_tokens,
            "results": results,
            "profiles": profiles,
            "prefill": prefill,
        }
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0
