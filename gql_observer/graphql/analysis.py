"""What a subscribe message asks for, worked out once per document.

A subscription of one observed field can be served together with the other
subscriptions of the same instance (:mod:`gql_observer.watch`) only where the
library can vouch that it then gets exactly what strawberry would send it if
it ran alone. :func:`analyze` decides that once per document text: the
document parses and validates as strawberry would parse and validate it, the
schema's extensions do nothing per operation or per result beyond what the
watch reproduces (validation rules, token limits, error masking), and the
operation subscribes to exactly one observed field (an instance's, or a live
list's: :mod:`gql_observer.graphql.list_member`). Anything else runs on its
own, through strawberry, as any GraphQL server runs it.

:meth:`Analysis.bind` then takes one subscriber's variables: coerced as
graphql-core coerces them, giving the root field's ``pk`` (or ``filters``,
converted as strawberry converts them for the resolver) and ``requestId``.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from django.core.signals import setting_changed
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    print_ast,
)
from graphql.execution.middleware import MiddlewareManager
from graphql.execution.values import get_argument_values
from strawberry.execution import optimized_is_awaitable
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
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.arguments import convert_arguments

from gql_observer.core.conf import get_settings
from gql_observer.graphql import documents
from gql_observer.graphql.completion import listed_definition, observed_definition
from gql_observer.graphql.execution import EventScopedExecutionContext
from gql_observer.graphql.relations import NOT_PLANNED
from gql_observer.graphql.shapes import Shape, compile_shape
from gql_observer.observe.definition import ObservedDefinition

if TYPE_CHECKING:
    from strawberry.schema import BaseSchema

__all__ = ["Analysis", "Binding", "analyze", "mask"]

logger = logging.getLogger(__name__)

_BACKREF: Final = GraphQLCoreConverter.DEFINITION_BACKREF

#: Extensions whose only effect on a subscription is to validate its document
#: once (and cache that), or to mask the errors of each result, which the
#: watch does itself. Exact classes: a subclass may do anything.
_ONCE_PER_DOCUMENT: Final = frozenset(
    {
        AddValidationRules,
        DisableIntrospection,
        MaxAliasesLimiter,
        MaxTokensLimiter,
        ParserCache,
        documents.PreparedDocuments,
        QueryDepthLimiter,
        ValidationCache,
    }
)
#: Execution contexts whose per-event execution is graphql-core's (with our
#: planned results, which equal it).
_PLAIN_EXECUTION: Final = frozenset({StrawberryGraphQLCoreExecutionContext})


@dataclass(frozen=True, slots=True)
class Binding:
    """One subscriber's values for an analysed operation: the instance's ``pk``,
    or a live list's ``filters`` (strawberry's input, as its resolver gets it)."""

    pk: Any
    request_id: Any
    filters: Any = None


class Analysis:
    """One document's subscription to an observed field, ready for many subscribers.

    ``shape`` is the part of every result that is the same for all of them (see
    :class:`gql_observer.plan.Shape`), shared between documents that differ only
    in the root field's arguments (a literal ``requestId``); ``None`` when each
    subscriber must run its own execution of every event.
    """

    __slots__ = (
        "definition",
        "document",
        "executor_class",
        "field_def",
        "holes",
        "listing",
        "masks",
        "operation_name",
        "read_plan",
        "root_node",
        "schema",
        "shape",
        "shape_key",
        "weight",
    )

    def __init__(
        self,
        schema: BaseSchema,
        document: DocumentNode,
        operation_name: str | None,
        definition: ObservedDefinition,
        root_node: FieldNode,
        field_def: Any,
        masks: tuple[MaskErrors, ...],
        weight: int = 0,
        *,
        listing: bool = False,
    ) -> None:
        self.schema = schema
        #: A live list's subscription (rows of a set), not an instance's.
        self.listing = listing
        self.document = document
        #: The bytes its document holds, roughly (what a cache of analyses weighs).
        self.weight = weight
        self.operation_name = operation_name
        self.definition = definition
        self.root_node = root_node
        self.field_def = field_def
        self.masks = masks
        self.executor_class: Any = schema.execution_context_class  # type: ignore[attr-defined]
        self.shape: Shape | None = None
        self.shape_key: Hashable = None
        #: Where this document's holes are resolved (``gql_observer.watch``).
        self.holes: Any = None
        #: The relations each event's read fetches for this document
        #: (:mod:`gql_observer.graphql.relations`), worked out by its first subscriber.
        self.read_plan: Any = NOT_PLANNED

    def executor(self, context: Any, variables: dict[str, Any] | None, root_value: Any) -> Any:
        """A graphql-core executor of this operation with one subscriber's context
        and variables, as strawberry builds it; a list of errors when the
        variables do not fit the operation."""
        return self.executor_class.build(
            self.schema._schema,  # type: ignore[attr-defined]
            self.document,
            root_value,
            context,
            variables,
            self.operation_name,
            middleware=MiddlewareManager(),
            is_awaitable=optimized_is_awaitable,
            operation_extensions=None,
        )

    def bind(self, variables: dict[str, Any] | None) -> Binding | None:
        """``pk`` and ``requestId`` for one subscriber's ``variables``, coerced as
        graphql-core coerces them; ``None`` if they do not fit (strawberry then
        reports why, as it would)."""
        executor = self.executor(None, variables, None)
        if isinstance(executor, list):
            return None
        try:
            args = get_argument_values(self.field_def, self.root_node, executor.variable_values)
        except GraphQLError:
            return None
        if self.shape_key is None:
            self.shape_key, self.shape = _shape(self, executor)
        filters = None
        if self.listing:
            try:
                converted = convert_arguments(
                    args,
                    self.field_def.extensions[_BACKREF].arguments,
                    scalar_registry=self.schema.schema_converter.scalar_registry,
                    config=self.schema.config,
                )
            except Exception:
                logger.debug("Could not convert a list's filters", exc_info=True)
                return None
            filters = converted.get("filters")
        return Binding(pk=args.get("pk"), request_id=args.get("requestId"), filters=filters)

    def errors_of(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        """``errors`` as the client gets them: logged by the schema and masked by
        its ``MaskErrors`` extensions, as strawberry does for each result."""
        self.schema.process_errors(errors, None)
        for extension in self.masks:
            errors = mask(extension, errors)
        return errors


def mask(extension: MaskErrors, errors: list[GraphQLError]) -> list[GraphQLError]:
    """What ``extension`` makes of ``errors`` (strawberry's ``MaskErrors``)."""
    return [
        extension.anonymise_error(error) if extension.should_mask_error(error) else error
        for error in errors
    ]


class _Unshared(Exception):
    """The operation runs on its own."""


#: Analyses by (schema, document text, operation name), weighed by their documents
#: (a subscriber keeps its own); ``(None,)``: the operation runs on its own.
_analyses: documents.BoundedCache[Hashable, tuple[Analysis | None]] = documents.BoundedCache(
    1024, documents.CACHE_BYTES
)
#: Shapes by (schema, canonical selection): one for documents that differ only
#: in the root field's arguments.
_shapes: dict[Hashable, Shape | None] = {}
_SHAPES: Final = 4096


def analyze(schema: BaseSchema, query: str, operation_name: str | None) -> Analysis | None:
    """The :class:`Analysis` of a subscribe message, or ``None`` when it must run
    on its own (through strawberry): not a valid subscription to one observed
    field, or a schema whose extensions act per operation."""
    key = (id(schema), query, operation_name)
    known = _analyses.get(key)
    if known is not None:
        return known[0]
    try:
        analysis: Analysis | None = _analyze(schema, query, operation_name)
    except _Unshared:
        analysis = None
    except Exception:
        logger.debug("Could not analyse a subscription; it runs on its own", exc_info=True)
        analysis = None
    # An analysis holds its document: it weighs what the document does.
    weight = 2 * len(query) + (analysis.weight if analysis is not None else 0)
    _analyses.put(key, (analysis,), weight)
    return analysis


def forget(**_: Any) -> None:
    """Forget every analysis (settings that decide them changed)."""
    _analyses.clear()
    _shapes.clear()


setting_changed.connect(forget)


def _extensions(schema: BaseSchema) -> tuple[MaskErrors, ...]:
    """The schema's ``MaskErrors``; raises :class:`_Unshared` for an extension that
    acts on each operation or result in a way the watch cannot reproduce."""
    if getattr(schema, "directives", None):
        raise _Unshared  # directives run as an extension hooking every field
    if getattr(schema, "execution_context_class", None) not in _executors():
        raise _Unshared
    extensions: list[SchemaExtension] = schema.get_extensions()  # type: ignore[attr-defined]
    masks: list[MaskErrors] = []
    for extension in extensions:
        if type(extension) is MaskErrors:
            masks.append(extension)
        elif type(extension) not in _ONCE_PER_DOCUMENT:
            raise _Unshared
    return tuple(masks)


def _executors() -> frozenset[type[Any]]:
    return _PLAIN_EXECUTION | {EventScopedExecutionContext}


def _analyze(schema: BaseSchema, query: str, operation_name: str | None) -> Analysis:
    masks = _extensions(schema)
    # Parsed (within the token limit) and validated once per text: the transport
    # prepared it, off the event loop when it is long.
    prepared = documents.prepare_now(schema, query)
    document = prepared.document
    if document is None:
        raise _Unshared  # strawberry answers it
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    elif len(operations) != 1:
        raise _Unshared
    if len(operations) != 1 or operations[0].operation != OperationType.SUBSCRIPTION:
        raise _Unshared
    operation = operations[0]
    selections = operation.selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        raise _Unshared
    root_node = selections[0]
    if documents.validation(schema, prepared) != []:
        raise _Unshared  # strawberry reports the errors
    graphql_schema = schema._schema  # type: ignore[attr-defined]
    field_def = graphql_schema.subscription_type.fields.get(root_node.name.value)
    strawberry_field = field_def.extensions.get(_BACKREF) if field_def is not None else None
    definition = observed_definition(strawberry_field)
    listing = definition is None
    if listing:
        definition = listed_definition(strawberry_field)
    if definition is None:
        raise _Unshared
    return Analysis(
        schema,
        document,
        operation_name,
        definition,
        root_node,
        field_def,
        masks,
        prepared.weight,
        listing=listing,
    )


def _shape(analysis: Analysis, executor: Any) -> tuple[Hashable, Shape | None]:
    """The shape of ``analysis``'s selection (compiled with ``executor``, one of its
    subscribers'), shared with every document of the same canonical selection."""
    root = analysis.root_node
    bare = FieldNode(
        alias=root.alias,
        name=root.name,
        arguments=(),
        directives=root.directives,
        selection_set=root.selection_set,
    )
    fragments = sorted(
        (d for d in analysis.document.definitions if isinstance(d, FragmentDefinitionNode)),
        key=lambda d: d.name.value,
    )
    canonical = print_ast(bare) + "".join(print_ast(f) for f in fragments)
    key = (id(analysis.schema), canonical)
    if key not in _shapes:
        shape = compile_shape(executor) if get_settings().planned_results else None
        if len(_shapes) >= _SHAPES:
            _shapes.clear()
        _shapes[key] = shape
    return key, _shapes[key]
