"""Whole results of an observed subscription that runs on its own (without a
watch), built without a GraphQL execution: when every field it selects is a
plain attribute, :func:`compile_subscription` compiles a plan at its first
event that builds each event's result the way graphql-core would
(:mod:`gql_observer.graphql.completion`); an event the plan cannot vouch for
(:class:`~gql_observer.graphql.completion.Miss`) is executed as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gql_observer.graphql.completion import (
    NO_INFO,
    Miss,
    Unplannable,
    completer,
    counts,
    root,
)

__all__ = ["Plan", "compile_subscription"]

logger = logging.getLogger(__name__)

#: Builds one event's ``data`` from its root value, or raises :class:`Miss`.
Plan = Callable[[Any], dict[str, Any]]


def compile_subscription(executor: Any) -> Plan | None:
    """A plan for the per-event results of ``executor``'s operation (a graphql-core
    ``Executor`` of a subscription to one observed field), or ``None``."""
    try:
        return _compile(executor)
    except Unplannable:
        return None
    except Exception:
        logger.debug("Could not plan a subscription; it runs the usual way", exc_info=True)
        return None


def _compile(executor: Any) -> Plan:
    key, nodes, field, fragments = root(executor)
    # The event is the envelope the subscription resolver yielded; strawberry's
    # resolver of a subscription field hands the event on as it is.
    resolve = field.resolve
    complete = completer(field.type, nodes, fragments)

    def plan(event: Any) -> dict[str, Any]:
        try:
            data = {key: complete(resolve(event, NO_INFO))}
        except Exception as error:
            counts["missed"] += 1
            raise Miss from error
        counts["planned"] += 1
        return data

    return plan
