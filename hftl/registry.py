"""Validated registries: the one list of tasks, of strategies, of guards and of model families.

A registry holds named entries (objects with a ``name`` and, optionally, an ``arguments``
dataclass whose fields join the command line). Registering checks what would otherwise break a run
later or silently: the name is unique and lowercase, and no argument field clashes with a
``TrainingArguments`` field or with a field another entry (of any registry) brought. Looking up an
unknown name is a ``ValueError`` that lists the names and suggests the closest one.

    STRATEGIES = Registry("strategy")
    STRATEGIES.register(Partial())
    STRATEGIES.get("partail")  # ValueError: unknown strategy 'partail' (did you mean 'partial'?) ...
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_NAME = re.compile(r"[a-z][a-z0-9_-]*")
# argument field -> "<kind> '<name>'" that brought it, across every registry
_FIELD_OWNERS: dict[str, str] = {}


def _training_argument_names() -> set[str]:
    from transformers import TrainingArguments

    return {field.name for field in dataclasses.fields(TrainingArguments)}


class Registry(Generic[T]):
    """Named entries of one kind (``task``, ``strategy``, ``guard``, ``family``), in registration
    order."""

    def __init__(self, kind: str, check=None):
        """``check(entry, entries)``: the kind's own validation of a new entry against the
        registered ones (raise ``ValueError``), e.g. that two model families claim no model type
        twice."""
        self.kind = kind
        self._check = check
        self._entries: dict[str, T] = {}

    def register(self, entry: T) -> T:
        name = getattr(entry, "name", None)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"{self.kind} name {name!r}: use lowercase letters, digits, '_' or '-', "
                "starting with a letter"
            )
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered already")
        if self._check is not None:
            self._check(entry, list(self._entries.values()))
        arguments = getattr(entry, "arguments", None)
        if arguments is not None:
            if not dataclasses.is_dataclass(arguments):
                raise TypeError(f"{self.kind} {name!r}: arguments must be a dataclass type")
            reserved = _training_argument_names()
            owner = f"{self.kind} '{name}'"
            for field in dataclasses.fields(arguments):
                if field.name in reserved:
                    raise ValueError(
                        f"{owner}: argument '{field.name}' is a TrainingArguments field; rename it"
                    )
                if _FIELD_OWNERS.get(field.name, owner) != owner:
                    raise ValueError(
                        f"{owner}: argument '{field.name}' belongs to {_FIELD_OWNERS[field.name]}"
                    )
            for field in dataclasses.fields(arguments):
                _FIELD_OWNERS[field.name] = owner
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        entry = self._entries.get(name)
        if entry is None:
            raise ValueError(self.unknown(name))
        return entry

    def unknown(self, name) -> str:
        """The message for an unknown name: the choices, and the closest one."""
        close = difflib.get_close_matches(str(name), list(self._entries), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; choose one of {', '.join(self._entries)}"

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def argument_classes(self) -> list[type]:
        """The entries' argument dataclasses, in registration order."""
        return [e.arguments for e in self._entries.values() if getattr(e, "arguments", None)]

    def __iter__(self) -> Iterator[T]:
        return iter(self._entries.values())

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
