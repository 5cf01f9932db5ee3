"""Watch graphql-core work: every parse of a document and every validation, with
the thread it ran in (a spy: nothing changes what they do)."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from graphql.language.parser import Parser
from graphql.language.source import Source

# The module (``graphql.validation.validate`` is also the name of its function).
validate_module = importlib.import_module("graphql.validation.validate")


@dataclass(frozen=True)
class Parse:
    """One parse: the length of the text, the tokens read, the thread."""

    length: int
    tokens: int
    thread: str


@dataclass
class Work:
    parses: list[Parse] = field(default_factory=list)
    #: The thread of each validation.
    validations: list[str] = field(default_factory=list)


@contextmanager
def graphql_work() -> Iterator[Work]:
    """Record the parses of documents and the validations in any thread."""
    work = Work()
    parse_document = Parser.parse_document
    visit = validate_module.visit

    def parsing(self: Parser) -> Any:
        try:
            return parse_document(self)
        finally:
            source = self._lexer.source
            body = source.body if isinstance(source, Source) else str(source)
            work.parses.append(Parse(len(body), self.token_count, threading.current_thread().name))

    def visiting(*args: Any, **kwargs: Any) -> Any:
        work.validations.append(threading.current_thread().name)
        return visit(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Parser, "parse_document", parsing)
        patch.setattr(validate_module, "visit", visiting)
        yield work
