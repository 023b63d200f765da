"""What a route gets from the app: its settings, its metrics and its engine (FastAPI dependencies)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..engine.engine import Engine
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


EngineDep = Annotated[Engine, Depends(_engine)]
SettingsDep = Annotated[ServerSettings, Depends(_settings)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
AdminKeyDep = Annotated[str | None, Depends(_admin_key)]
