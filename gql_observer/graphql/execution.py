"""The execution context ``build_schema`` installs: strawberry's, with a memo of
its own for every subscription event and planned results."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Any, cast

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gql_observer.core.conf import get_settings
from gql_observer.graphql.completion import Miss
from gql_observer.graphql.context import event_context
from gql_observer.graphql.plan import Plan, compile_subscription

__all__ = ["EventScopedExecutionContext"]


class EventScopedExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, with a memo of its own for every event,
    and planned results for observed subscriptions.

    graphql-core 3.3 builds each subscription event's executor as a shallow
    copy of the subscription's, sharing its memo of collected subfields; every
    event adds entries to it, kept until the subscription ends — about 3 KiB per
    event, found by the soak benchmark. Here each event starts a fresh memo.

    Each event is executed with a context of its own when the context hook made
    the operation's (:func:`gql_observer.graphql.context.event_context`): a
    DataLoader in it never serves what an earlier event loaded.

    A subscription to an observed field whose selection is plain attributes
    gets its events' results from a plan (:mod:`gql_observer.graphql.plan`), compiled
    at its first event; an event the plan cannot vouch for is executed as usual.
    """

    _plan: Plan | None = None
    _planned = False
    _event = False

    @property
    def plan(self) -> Plan | None:
        """The plan this subscription's events get their results from: compiled
        at its first event, ``None`` before, when its selection is not plain
        attributes, or with ``PLANNED_RESULTS`` off."""
        return self._plan

    def build_per_event_executor(self, payload: Any) -> Any:
        if not self._planned:
            self._planned = True
            if get_settings().planned_results:
                self._plan = compile_subscription(self)
        executor = cast(EventScopedExecutionContext, super().build_per_event_executor(payload))
        executor._relevant_sub_fields = {}
        executor._event = True
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        plan = self._plan
        if plan is not None and self._event and self.abort_signal is None:
            try:
                data = plan(self.root_value)
            except Miss:
                pass
            else:
                return self.build_response(data)
        if self._event:
            context = event_context(self.context_value)
            if inspect.isawaitable(context):
                return self._execute_in(context, serially)
            self.context_value = context
        return super().execute_operation(serially)

    async def _execute_in(self, context: Awaitable[Any], serially: bool | None) -> Any:
        self.context_value = await context
        result = super().execute_operation(serially)
        return await result if self.is_awaitable(result) else result
