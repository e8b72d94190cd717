"""A name -> constructor registry for models, pooling layers, losses and front-ends.

    @register("model", "xvector")
    class Xvector(nn.Module): ...

    build("model", "xvector", feat_dim=30, embedding_dim=512)

An unknown name raises :class:`UnknownNameError` (a ``KeyError``) that lists the valid
names; a keyword the constructor does not take raises :class:`UnknownOptionError` (a
``TypeError``) naming it: both are user errors (a recipe's typo), so both are
:class:`voiceprint.errors.VoiceprintError`. The registry imports nothing of the project
but that leaf: a kind is filled when the module that defines it is imported
(``voiceprint.models`` for models, ``voiceprint.pooling``, ``voiceprint.losses``,
``voiceprint.features``), which is what their ``build_*`` functions do.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from voiceprint.errors import VoiceprintError

T = TypeVar("T")


class UnknownNameError(VoiceprintError, KeyError):
    """No constructor is registered under that name; the message lists the valid ones."""


class UnknownOptionError(VoiceprintError, TypeError):
    """A keyword the constructor does not take; the message names it and the valid ones."""


_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {}


def register(kind: str, name: str, *aliases: str) -> Callable[[T], T]:
    """Class/function decorator: register ``obj`` under ``kind``/``name`` (and aliases)."""

    def decorator(obj: T) -> T:
        table = _REGISTRY.setdefault(kind, {})
        for key in (name, *aliases):
            key = key.lower()
            if key in table and table[key] is not obj:
                raise ValueError(f"{kind} {key!r} is already registered")
            table[key] = obj  # type: ignore[assignment]
        return obj

    return decorator


# The module whose import registers each kind (named in the error for an empty kind).
HOMES = {
    "model": "voiceprint.models",
    "pooling": "voiceprint.pooling",
    "loss": "voiceprint.losses",
    "frontend": "voiceprint.features",
}


def names(kind: str) -> list[str]:
    """Sorted names registered for ``kind`` (by the modules imported so far)."""
    return sorted(_REGISTRY.get(kind, {}))


def lookup(kind: str, name: str) -> Callable[..., Any]:
    """The constructor registered as ``kind``/``name``; UnknownNameError listing valid names."""
    table = _REGISTRY.get(kind, {})
    key = name.lower()
    if not table:
        home = HOMES.get(kind, "the module that defines them")
        raise UnknownNameError(f"no {kind} is registered yet: import {home} first")
    if key not in table:
        raise UnknownNameError(f"unknown {kind} {name!r}; valid names: {', '.join(sorted(table))}")
    return table[key]


def build(kind: str, name: str, **kwargs: Any) -> Any:
    """Construct ``kind``/``name`` with ``kwargs``; unknown keywords raise UnknownOptionError."""
    ctor = lookup(kind, name)
    params = inspect.signature(ctor).parameters
    takes_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not takes_var_kw:
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            valid = ", ".join(p for p in params if p != "self")
            raise UnknownOptionError(
                f"{kind} {name!r} takes no option(s) {unknown}; valid: {valid}"
            )
    return ctor(**kwargs)
