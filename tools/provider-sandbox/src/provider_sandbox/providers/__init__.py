"""One module per emulated provider. Each exposes ``build(sandbox, config) -> Part``;
the app discovers them, so adding a provider touches no shared file."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Protocol

from aiohttp import web

from provider_sandbox.config import SandboxConfig
from provider_sandbox.core import Sandbox


class Part(Protocol):
    """A provider (or a piece of one) mounted into the sandbox app."""

    name: str

    def reset(self) -> None: ...

    def setup(self, app: web.Application) -> None: ...


class Builder(Protocol):
    def __call__(self, sandbox: Sandbox, config: SandboxConfig) -> Part: ...


def builders() -> Iterator[tuple[str, Builder]]:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        build = getattr(module, "build", None)
        if build is not None:
            yield info.name, build
