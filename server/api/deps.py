"""What a route gets from the app: its settings, its metrics, its engine, and who is asking (FastAPI
dependencies)."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, Request

from ..engine.engine import Engine
from ..errors import CredentialsInUrlError, ForbiddenError, UnauthorizedError
from ..metrics import Metrics
from ..settings import ServerSettings


def _engine(request: Request) -> Engine:
    return request.app.state.engine


def _settings(request: Request) -> ServerSettings:
    return request.app.state.settings


def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def _admin_key(request: Request) -> str | None:
    return request.app.state.admin_key


CREDENTIAL_PARAMETERS = frozenset({"key", "api_key", "apikey", "api-key", "token", "access_token", "auth"})


def no_credentials_in_url(request: Request) -> None:
    """Refuse a credential in the query string: URLs are written to access logs (uvicorn's included)."""
    found = CREDENTIAL_PARAMETERS & {name.lower() for name in request.query_params}
    if found:
        raise CredentialsInUrlError(
            f"do not send credentials in the URL ({', '.join(sorted(found))}: URLs are logged): "
            "send 'Authorization: Bearer <key>'"
        )


def redact_credentials(path: str) -> str:
    """``path`` with the values of credential-like query parameters replaced by ``***``."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(name.lower() in CREDENTIAL_PARAMETERS for name, _ in pairs):
        return path
    safe = [(name, "***" if name.lower() in CREDENTIAL_PARAMETERS else value) for name, value in pairs]
    return f"{base}?{urlencode(safe, safe='*')}"


class RedactCredentialsInAccessLog(logging.Filter):
    """For uvicorn's access log, whose record args are (client, method, path with query, http
    version, status): a credential sent in the URL (refused with 400) is not written to the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact_credentials(args[2]), args[3], args[4])
        return True


ACCESS_LOG_FILTER = RedactCredentialsInAccessLog()


def install_access_log_filter() -> None:
    logger = logging.getLogger("uvicorn.access")
    if ACCESS_LOG_FILTER not in logger.filters:
        logger.addFilter(ACCESS_LOG_FILTER)


def bearer_token(request: Request) -> str | None:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def matches(token: str | None, key: str) -> bool:
    """Constant-time comparison (the length of a wrong token is all it can learn)."""
    return token is not None and hmac.compare_digest(token.encode(), key.encode())


@dataclass(frozen=True)
class Caller:
    """Who sends an inference request: the adapters their API key may use (None: any)."""

    adapters: frozenset[str] | None

    def may_use(self, adapter: str | None) -> bool:
        return self.adapters is None or (adapter or BASE) in self.adapters

    def check(self, adapter: str | None) -> None:
        if not self.may_use(adapter):
            what = f"adapter {adapter!r}" if adapter else "the plain base model"
            raise ForbiddenError(f"this API key may not use {what}")


BASE = "_base"  # the name that lets a limited API key use the plain base model


def caller(request: Request) -> Caller:
    """The caller of an inference route: open when no API key is configured; else the key's rights."""
    keys: dict[str, frozenset[str] | None] = request.app.state.api_keys
    if not keys:
        return Caller(None)
    token = bearer_token(request)
    found = [rights for key, rights in keys.items() if matches(token, key)]  # every key is compared
    if not found:
        raise UnauthorizedError(
            "this server needs an API key: send 'Authorization: Bearer <key>'"
            if token is None
            else "wrong API key"
        )
    return Caller(found[0])


EngineDep = Annotated[Engine, Depends(_engine)]
CallerDep = Annotated[Caller, Depends(caller)]
SettingsDep = Annotated[ServerSettings, Depends(_settings)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
AdminKeyDep = Annotated[str | None, Depends(_admin_key)]
