"""The DCRF envelope as a GraphQL type: ``{action errors responseStatus requestId data}``."""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any, Final

import strawberry
from strawberry.scalars import JSON

from gql_observer.observe.definition import ObservedDefinition

__all__ = [
    "BAD_REQUEST",
    "CREATED",
    "DELETED",
    "ERRORS",
    "NOT_FOUND",
    "OK",
    "UNAUTHORIZED",
    "Action",
    "Status",
    "envelope",
    "envelope_type",
    "list_envelope_type",
    "row_envelope_type",
]


class Action(StrEnum):
    """An envelope's ``action`` (DCRF's names)."""

    RETRIEVE = "retrieve"
    SUBSCRIBE_INSTANCE = "subscribe_instance"
    UPDATE = "update"
    DELETE = "delete"
    LIST = "list"
    SUBSCRIBE_LIST = "subscribe_list"
    CREATE = "create"


class Status(IntEnum):
    """An envelope's ``responseStatus`` (HTTP's numbers)."""

    OK = 200
    CREATED = 201
    DELETED = 204
    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    NOT_FOUND = 404


OK: Final = Status.OK
CREATED: Final = Status.CREATED
DELETED: Final = Status.DELETED
BAD_REQUEST: Final = Status.BAD_REQUEST
UNAUTHORIZED: Final = Status.UNAUTHORIZED
NOT_FOUND: Final = Status.NOT_FOUND

#: ``errors`` of an envelope without data, by status.
ERRORS: Final[dict[int, tuple[str, ...]]] = {
    NOT_FOUND: ("Not found.",),
    UNAUTHORIZED: ("Authentication required.",),
}

_envelope_types: dict[tuple[int, str], type[Any]] = {}


def _envelope_type(
    definition: ObservedDefinition,
    suffix: str,
    fields: dict[str, Any],
    doc: str,
    defaults: dict[str, Any] | None = None,
) -> type[Any]:
    """``<TypeName><suffix>``: an envelope with ``fields`` after the common ones
    (``defaults``: their strawberry fields), made once per definition (a schema
    holds one type of a name)."""
    key = (id(definition), suffix)
    cached = _envelope_types.get(key)
    if cached is None:
        name = f"{definition.type_name}{suffix}"
        namespace: dict[str, Any] = {
            "__annotations__": {
                "action": str,
                "errors": list[str],
                "response_status": int,
                "request_id": JSON | None,
                **fields,
            },
            **(defaults or {}),
            "__module__": __name__,
            "__doc__": doc,
        }
        cached = strawberry.type(type(name, (), namespace), name=name)
        _envelope_types[key] = cached
    return cached


def envelope_type(definition: ObservedDefinition) -> type[Any]:
    """The strawberry type ``<TypeName>Envelope`` of ``definition`` (built once)."""
    return _envelope_type(
        definition,
        "Envelope",
        {"data": definition.type_ | None, "resync": bool},
        f"What happened to one {definition.type_name}, as djangochannelsrestframework "
        "reports it: the action, its status (HTTP-like), the client's requestId echoed, "
        "and the instance (null when there is none to show).",
        {
            "resync": strawberry.field(
                default=False,
                description=(
                    "True when this state was re-read because the server lost contact with "
                    "the channel layer for a while (changes in between may have merged)."
                ),
            )
        },
    )


def envelope(
    definition: ObservedDefinition,
    action: Action,
    status: int,
    request_id: Any,
    data: Any = None,
    errors: list[str] | None = None,
    *,
    resync: bool = False,
) -> Any:
    """One envelope value of ``definition``'s envelope type."""
    return envelope_type(definition)(
        action=action,
        errors=errors or [],
        response_status=status,
        request_id=request_id,
        data=data,
        resync=resync,
    )


def list_envelope_type(definition: ObservedDefinition) -> type[Any]:
    """``<TypeName>ListEnvelope``: the list Query's answer, ``data`` the page of rows."""
    return _envelope_type(
        definition,
        "ListEnvelope",
        {"data": list[definition.type_]},  # type: ignore[name-defined]
        f"One page of the {definition.type_name} rows the viewer may see, ordered "
        "by primary key (action list), with the client's requestId echoed.",
    )


def row_envelope_type(definition: ObservedDefinition) -> type[Any]:
    """``<TypeName>RowEnvelope``: one message of the list Subscription, about the
    row ``pk`` (null on the first message)."""
    return _envelope_type(
        definition,
        "RowEnvelope",
        {"pk": strawberry.ID | None, "data": definition.type_ | None},
        f"A {definition.type_name} entering (create), changing in (update) or "
        "leaving (delete) the subscriber's list: the row's pk, and the row (on a "
        "delete its last values, or null when it left the filter or the "
        "viewer's sight).",
    )
