"""The list fields of a type observed with ``filters=``: a Query of one page of
the viewer's rows, and a Subscription of every row that enters, changes in or
leaves the viewer's set (docs/lists.md).

A list subscription is served on its own, through strawberry's execution of
each envelope it yields (so field permissions, custom resolvers and the
subscriber's context behave as in any strawberry subscription). It remembers
the keys of the rows in its set; on each batch of changes of the model it
reads the changed rows once, through the type's queryset, the filter and the
``permission`` hook, and tells the client what the batch did to its set.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from functools import partial
from typing import Any, Optional

import strawberry
from strawberry import Info
from strawberry.scalars import JSON
from strawberry.types.field import StrawberryField
from strawberry.types.unset import UNSET
from strawberry_django.pagination import OffsetPaginationInput

from gql_observer.core.conf import Settings
from gql_observer.graphql import list_watch
from gql_observer.graphql.completion import LISTED
from gql_observer.graphql.envelope import (
    BAD_REQUEST,
    CREATED,
    ERRORS,
    OK,
    UNAUTHORIZED,
    Action,
    list_envelope_type,
    row_envelope_type,
)
from gql_observer.graphql.listing import STATUS, BadFilter, checked, page, refused, run
from gql_observer.graphql.runtime import current
from gql_observer.graphql.viewers import viewer_of
from gql_observer.observe.definition import ObservedDefinition

__all__ = ["list_query_field", "list_subscription_field", "page_bounds"]

logger = logging.getLogger(__name__)


def page_bounds(settings: Settings, pagination: Any) -> tuple[int, int] | str:
    """``(offset, limit)`` of a page, or why the pagination is refused. No limit:
    ``LIST_PAGE_SIZE``; a negative one or one above ``LIST_MAX_PAGE_SIZE``: the
    maximum."""
    offset, limit = 0, None
    if pagination is not None and pagination is not UNSET:
        offset = pagination.offset or 0
        limit = None if pagination.limit is UNSET else pagination.limit
    if offset < 0:
        return f"pagination.offset must be 0 or more, not {offset}."
    if limit is None:
        limit = settings.list_page_size
    if limit < 0 or limit > settings.list_max_page_size:
        limit = settings.list_max_page_size
    return offset, min(limit, settings.list_max_page_size)


def list_query_field(definition: ObservedDefinition) -> StrawberryField:
    """``<list>(filters, pagination, requestId): <Type>ListEnvelope!``."""
    envelope = list_envelope_type(definition)

    def answer(status: int, request_id: Any, rows: list[Any], errors: list[str]) -> Any:
        return envelope(
            action=Action.LIST,
            errors=errors,
            response_status=status,
            request_id=request_id,
            data=rows,
        )

    async def resolve(
        info: Info,
        filters: Any = None,
        pagination: OffsetPaginationInput | None = None,
        request_id: JSON | None = None,
    ) -> Any:
        runtime = current()
        bounds = page_bounds(runtime.settings, pagination)
        if isinstance(bounds, str):
            return answer(BAD_REQUEST, request_id, [], [bounds])
        ok, user = await checked(runtime.reads, definition, viewer_of(info, definition))
        if not ok:
            return answer(UNAUTHORIZED, request_id, [], list(ERRORS[UNAUTHORIZED]))
        offset, limit = bounds
        why = refused(runtime.settings, definition, filters)
        if why is not None:
            return answer(BAD_REQUEST, request_id, [], [f"Invalid filters: {why}"])
        work = partial(page, definition, info, user, filters, offset, limit)
        try:
            rows = await run(runtime.reads, definition, work)
        except BadFilter as error:
            return answer(BAD_REQUEST, request_id, [], [f"Invalid filters: {error}"])
        return answer(OK, request_id, rows, [])

    resolve.__annotations__ = {
        "info": Info,
        "filters": Optional[definition.filters],  # noqa: UP045 - a type built at run time
        "pagination": OffsetPaginationInput | None,
        "request_id": JSON | None,
        "return": envelope,
    }
    field: StrawberryField = strawberry.field(
        resolver=resolve,
        name=definition.list_name,
        description=(
            f"One page of the {definition.type_name} rows you may see that match the "
            "filters, ordered by primary key."
        ),
    )
    return field


def list_subscription_field(definition: ObservedDefinition) -> StrawberryField:
    """``<list>(filters, requestId): <Type>RowEnvelope!`` — rows entering,
    changing in and leaving the subscriber's list."""
    envelope = row_envelope_type(definition)

    def message(
        action: str, status: int, request_id: Any, pk: str | None = None, row: Any = None
    ) -> Any:
        return envelope(
            action=action,
            errors=list(ERRORS.get(status, ())),
            response_status=status,
            request_id=request_id,
            pk=pk,
            data=row,
        )

    async def subscribe(
        info: Info, filters: Any = None, request_id: JSON | None = None
    ) -> AsyncGenerator[Any, None]:
        runtime = current()
        reads = runtime.reads
        viewer = viewer_of(info, definition)
        ok, user = await checked(reads, definition, viewer)
        if not ok:
            yield message(Action.SUBSCRIBE_LIST, UNAUTHORIZED, request_id)
            return
        try:
            member = await list_watch.join(runtime, definition, info, viewer, user, filters)
        except BadFilter as error:
            bad = message(Action.SUBSCRIBE_LIST, BAD_REQUEST, request_id)
            bad.errors = [f"Invalid filters: {error}"]
            yield bad
            return
        try:
            yield message(Action.SUBSCRIBE_LIST, CREATED, request_id)
            while True:
                changes = await member.next()
                if changes == list_watch.REFUSED:
                    # No longer who they were: fail closed, end here.
                    yield message(Action.UPDATE, UNAUTHORIZED, request_id)
                    return
                if isinstance(changes, str):
                    return
                for change in changes:
                    yield message(
                        change.action, STATUS[change.action], request_id, change.pk, change.row
                    )
        finally:
            member.leave()

    subscribe.__annotations__ = {
        "info": Info,
        "filters": Optional[definition.filters],  # noqa: UP045 - a type built at run time
        "request_id": JSON | None,
        "return": AsyncGenerator[envelope, None],  # type: ignore[valid-type]
    }
    field: StrawberryField = strawberry.subscription(  # type: ignore[assignment]
        resolver=subscribe,
        name=definition.list_name,
        description=(
            f"Every {definition.type_name} that enters (create), changes in (update) or "
            "leaves (delete) the rows you may see that match the filters."
        ),
    )
    setattr(field, LISTED, definition)
    return field
