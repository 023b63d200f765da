"""`inputtune serve`: the HTTP server. Options mirror ServerSettings (also INPUTTUNE_* variables)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
import typing

from pydantic import ValidationError

from ..settings import ServerSettings

log = logging.getLogger(__name__)
SECRET_FIELDS = {"admin_api_key"}  # never on a command line (visible in ps): environment or a file


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per settings field; unset options leave the environment's value alone."""
    for name, field in ServerSettings.model_fields.items():
        if name in SECRET_FIELDS:
            continue
        flag = "--" + name.replace("_", "-")
        default = field.get_default(call_default_factory=True)
        help_text = f"{field.description} (env INPUTTUNE_{name.upper()}, default {default!r})"
        if field.annotation is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
        else:
            is_list = typing.get_origin(field.annotation) is list
            parser.add_argument(
                flag,
                default=argparse.SUPPRESS,
                metavar="NAMES" if is_list else None,
                help=help_text + (" comma-separated" if is_list else ""),
            )


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    given = {name: getattr(args, name) for name in ServerSettings.model_fields if hasattr(args, name)}
    try:
        return ServerSettings(**given)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg']}" for err in e.errors()
        )
        raise ValueError(f"invalid server settings: {problems}") from e


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
    from pathlib import Path

    import uvicorn

    from ..naive import create_naive_app
    from .generate import resolve_model

    model, adapter_dir = resolve_model(args.model, args.adapter_dir)
    if adapter_dir is None:
        raise ValueError("serve-naive with --model also needs --adapter-dir")
    app = create_naive_app(model, Path(adapter_dir), device=args.device, dtype=args.dtype)
    _graceful_server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")).run()
    return 0
