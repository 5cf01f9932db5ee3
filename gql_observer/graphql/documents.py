"""Client documents: parsed once per text within the token limit, validated once
per text and schema, and never for long in the event loop.

Every document a client sends is parsed here before anything else looks at it:
graphql-core's ``parse(max_tokens=...)`` stops at the token limit
(``MAX_QUERY_TOKENS``, or a lower one of the schema's ``MaxTokensLimiter``), so
no document costs more than the limit allows. The result, a document or its
syntax error, is kept in a bounded cache by its text and reused by everything
that needs it for that operation: the HTTP check for subscriptions, the
analysis of a subscription (:mod:`gql_observer.operation`) and strawberry's own
execution, which takes it through the :class:`PreparedDocuments` extension that
:func:`gql_observer.schema.default_extensions` installs.

Validation (the GraphQL rules plus the schema's depth, alias and introspection
rules) is done here too, once per text and schema, when the schema's extensions
are known to make it depend on the document alone (:func:`profile`); otherwise
strawberry validates each operation itself, as it always does.

The most expensive document the default limits allow costs about 0.1-0.2 s to
parse and validate (measured: 2,000 tokens of one field name, where
graphql-core's check of overlapping fields spends its whole budget). Documents
longer than :data:`INLINE_LENGTH` characters are therefore parsed and validated
in one worker thread: the event loop only waits for them, so one client's
document never holds up the other clients for more than the few milliseconds a
short document can cost (about 7 ms at most, measured). The worker runs one job
at a time, so a flood of long documents queues behind itself, not in front of
the short ones, and it rests as long as it worked after each job: the event
loop, which shares the interpreter with it, always gets at least half of it.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from django.core.signals import setting_changed
from graphql import DocumentNode, GraphQLError, parse, specified_rules
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.directives import DirectivesExtension, DirectivesExtensionSync
from strawberry.schema.schema import validate_document

from gql_observer.core.conf import get_settings

if TYPE_CHECKING:
    from graphql import ASTValidationRule
    from strawberry.schema import BaseSchema

__all__ = [
    "INLINE_LENGTH",
    "BoundedCache",
    "Prepared",
    "PreparedDocuments",
    "Profile",
    "lookup",
    "prepare",
    "prepare_now",
    "profile",
    "validation",
]

#: Documents up to this many characters are parsed and validated in the event
#: loop (a few milliseconds at most); longer ones in the worker thread.
INLINE_LENGTH: Final = 256
#: What the cache of parsed documents may hold: entries, and estimated bytes
#: (a token's AST costs about 600 bytes; the text is held twice at most).
CACHE_ENTRIES: Final = 1024
CACHE_BYTES: Final = 32 * 1024 * 1024
_TOKEN_BYTES: Final = 600

#: Extensions whose validation rules are exactly their ``validation_rules``
#: (exact classes: a subclass may add rules per operation).
_RULE_EXTENSIONS: Final[frozenset[type[Any]]] = frozenset(
    {AddValidationRules, DisableIntrospection, MaxAliasesLimiter, QueryDepthLimiter}
)
#: Extensions that leave the validation rules alone.
_RULELESS_EXTENSIONS: Final[frozenset[type[Any]]] = frozenset(
    {
        DirectivesExtension,
        DirectivesExtensionSync,
        MaskErrors,
        MaxTokensLimiter,
        ParserCache,
        ValidationCache,
    }
)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A least-recently-used cache bounded in entries and in total weight
    (estimated bytes); safe to use from several threads."""

    def __init__(self, entries: int, weight: int) -> None:
        self.entries = entries
        self.weight = weight
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: K, value: V, weight: int) -> None:
        """Keep ``value``; the least recently used go while the bounds are exceeded
        (a value heavier than the whole budget is not kept at all)."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._total -= old[1]
            if weight > self.weight:
                return
            self._items[key] = (value, weight)
            self._total += weight
            while len(self._items) > self.entries or self._total > self.weight:
                _, (_, dropped) = self._items.popitem(last=False)
                self._total -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._total = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def total(self) -> int:
        """The estimated bytes held."""
        return self._total


@dataclass(slots=True, eq=False)
class Prepared:
    """One document text, parsed with ``max_tokens``: its ``document`` or its
    syntax ``error``; ``validations`` by :class:`Profile` serial."""

    text: str
    max_tokens: int
    document: DocumentNode | None
    error: GraphQLError | None
    tokens: int
    validations: dict[int, list[GraphQLError]] = field(default_factory=dict)

    @property
    def weight(self) -> int:
        """The bytes it holds, roughly."""
        return _TOKEN_BYTES * self.tokens + 2 * len(self.text)


@dataclass(slots=True, eq=False)
class Profile:
    """What a schema's extensions make of a document: the token limit of its
    first parse, and the validation rules when they depend on the document alone
    (``None``: strawberry validates each operation itself)."""

    serial: int
    max_tokens: int
    rules: tuple[type[ASTValidationRule], ...] | None


_cache: BoundedCache[tuple[str, int], Prepared] = BoundedCache(CACHE_ENTRIES, CACHE_BYTES)
_profiles: weakref.WeakKeyDictionary[Any, Profile] = weakref.WeakKeyDictionary()
_serials = itertools.count(1)
_worker: ThreadPoolExecutor | None = None
_worker_lock = threading.Lock()


def cache_held() -> tuple[int, int]:
    """What the cache of parsed documents holds: (documents, estimated bytes),
    within ``CACHE_ENTRIES`` and ``CACHE_BYTES``."""
    return len(_cache), _cache.total


def profile(schema: BaseSchema) -> Profile:
    """The :class:`Profile` of ``schema`` (worked out once, again after a settings change)."""
    found = _profiles.get(schema)
    if found is None:
        found = _profiles[schema] = _profile(schema)
    return found


def _profile(schema: BaseSchema) -> Profile:
    max_tokens = get_settings().max_query_tokens
    extensions: list[SchemaExtension] = schema.get_extensions()  # type: ignore[attr-defined]
    rules: list[type[ASTValidationRule]] | None = list(specified_rules)
    for extension in extensions:
        kind = type(extension)
        if isinstance(extension, MaxTokensLimiter):
            max_tokens = min(max_tokens, extension.max_token_count)
        if rules is None:
            continue
        if kind in _RULE_EXTENSIONS:
            rules.extend(extension.validation_rules)  # type: ignore[attr-defined]
        elif kind not in _RULELESS_EXTENSIONS and kind is not PreparedDocuments:
            rules = None  # it may change the rules for each operation
    return Profile(next(_serials), max_tokens, tuple(rules) if rules is not None else None)


def forget(**_: Any) -> None:
    """Forget every parse and profile (the settings that decide them changed)."""
    _cache.clear()
    _profiles.clear()


setting_changed.connect(forget)


def lookup(schema: BaseSchema, text: str) -> Prepared | None:
    """The cached parse of ``text`` for ``schema``, if there is one."""
    return _cache.get((text, profile(schema).max_tokens))


def validation(schema: BaseSchema, prepared: Prepared) -> list[GraphQLError] | None:
    """The validation errors of ``prepared`` by ``schema``'s rules, when known."""
    return prepared.validations.get(profile(schema).serial)


def _parse(text: str, max_tokens: int) -> Prepared:
    try:
        document = parse(text, max_tokens=max_tokens)
    except GraphQLError as error:
        # Nothing of the failed parse stays but the error (and its source).
        error.__traceback__ = None
        return Prepared(text, max_tokens, None, error, 0)
    return Prepared(text, max_tokens, document, None, _count_tokens(document))


def _count_tokens(document: DocumentNode) -> int:
    token = document.loc.start_token if document.loc is not None else None
    count = 0
    while token is not None:
        count += 1
        token = token.next
    return count


def _validate(schema: BaseSchema, document: DocumentNode, rules: Any) -> list[GraphQLError]:
    errors = validate_document(schema._schema, document, rules)  # type: ignore[attr-defined]
    for error in errors:
        error.__traceback__ = None
    return errors


def _prepare(schema: BaseSchema, shape: Profile, text: str, known: Prepared | None) -> Prepared:
    """Parse (unless ``known``) and validate ``text``: the work, wherever it runs
    (``shape``, the schema's profile, is worked out by the caller)."""
    prepared = known if known is not None else _parse(text, shape.max_tokens)
    if (
        prepared.document is not None
        and shape.rules is not None
        and shape.serial not in prepared.validations
    ):
        prepared.validations[shape.serial] = _validate(schema, prepared.document, shape.rules)
    return prepared


def _paced(schema: BaseSchema, shape: Profile, text: str, known: Prepared | None) -> Prepared:
    """:func:`_prepare` in the worker, which then rests as long as it worked: long
    documents, together, get at most half of the interpreter, and the event loop
    (which waits for the interpreter while the worker holds it) the rest."""
    start = time.monotonic()
    try:
        return _prepare(schema, shape, text, known)
    finally:
        time.sleep(time.monotonic() - start)


def _done(shape: Profile, prepared: Prepared | None) -> bool:
    if prepared is None:
        return False
    return prepared.document is None or shape.rules is None or shape.serial in prepared.validations


def prepare_now(schema: BaseSchema, text: str) -> Prepared:
    """:func:`prepare` in the calling thread, whatever the document's length
    (for callers outside the transports, which have no loop to spare)."""
    shape = profile(schema)
    known = _cache.get((text, shape.max_tokens))
    if _done(shape, known):
        assert known is not None
        return known
    prepared = _prepare(schema, shape, text, known)
    _cache.put((text, prepared.max_tokens), prepared, prepared.weight)
    return prepared


async def prepare(schema: BaseSchema, text: str) -> Prepared:
    """``text`` parsed within the token limit and, where the schema allows it,
    validated: from the cache, in the event loop for a short document, in the
    worker thread for a long one."""
    shape = profile(schema)
    known = _cache.get((text, shape.max_tokens))
    if _done(shape, known):
        assert known is not None
        return known
    if len(text) <= INLINE_LENGTH:
        return prepare_now(schema, text)
    prepared = await asyncio.get_running_loop().run_in_executor(
        _executor(), _paced, schema, shape, text, known
    )
    _cache.put((text, prepared.max_tokens), prepared, prepared.weight)
    return prepared


def _executor() -> ThreadPoolExecutor:
    global _worker
    with _worker_lock:
        if _worker is None:
            # One thread: long documents queue behind each other, and the event
            # loop shares the interpreter with one of them at a time.
            _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gql_observer.documents")
        return _worker


class PreparedDocuments(SchemaExtension):
    """Strawberry's parse and validation take the prepared document.

    Installed by :func:`gql_observer.schema.default_extensions`. When the
    transport has prepared the operation's text (:func:`prepare`), strawberry
    executes that document instead of parsing it again, and takes its
    validation errors instead of validating it again; otherwise (a text nobody
    prepared, a parse with other options) strawberry does both itself.
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is None and context.query:
            prepared = lookup(context.schema, context.query)
            limit = context.parse_options.get("max_tokens")
            if (
                prepared is not None
                and prepared.document is not None
                and (limit is None or limit >= prepared.max_tokens)
            ):
                context.graphql_document = prepared.document
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.pre_execution_errors is None and context.query:
            prepared = lookup(context.schema, context.query)
            if prepared is not None and prepared.document is context.graphql_document:
                errors = validation(context.schema, prepared)
                if errors is not None:
                    context.pre_execution_errors = list(errors)
        yield
