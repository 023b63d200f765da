"""`inputtune serve` (the HTTP server) and `inputtune serve-naive` (the baseline, for benchmarks).
Options mirror ServerSettings (also INPUTTUNE_* variables)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading

from .options import MODEL_FIELDS, add_settings_options, settings_from_args

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_options(parser)


def add_naive_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_options(parser, only=(*MODEL_FIELDS, "host", "port"))


def _graceful_server(config):
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so the process would die by the
    signal; a drained shutdown is a clean exit here, so handle the signals without re-raising."""
    import uvicorn

    class GracefulServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return GracefulServer(config)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..app import create_app

    settings = settings_from_args(args)
    fatal: list[BaseException] = []
    server = None

    def on_fatal(error: BaseException) -> None:
        fatal.append(error)
        if server is not None:
            server.should_exit = True

    url = f"http://{settings.host}:{settings.port}"
    app = create_app(settings, on_fatal=on_fatal, url=url)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
        lifespan="on",
    )
    server = _graceful_server(config)
    server.run()  # SIGTERM/SIGINT: stop accepting, finish in-flight requests, run the engine's drain
    if fatal:
        log.error("inputtune could not start: %s", fatal[0])
        return 1
    return 0


def run_naive(args: argparse.Namespace) -> int:
    """The naive baseline server (one request at a time, plain transformers generate)."""
    import uvicorn

    from ..demo import resolve_model
    from ..errors import SettingsError
    from ..perf.naive import create_naive_app

    settings = settings_from_args(args)
    model, adapter_dir = resolve_model(settings.model, settings.adapter_dir, settings.cache)
    if adapter_dir is None:
        raise SettingsError("serve-naive with --model also needs --adapter-dir")
    app = create_naive_app(model, adapter_dir, device=settings.device, dtype=settings.dtype)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning")
    _graceful_server(config).run()
    return 0
