"""Watches: the observed subscriptions of one instance in one event loop, served
together.

A watch holds one hub subscription for its instance and a member for every
subscriber (:mod:`gql_observer.graphql.member`), each with its own viewer,
variables, ``requestId`` and context. Each change costs the watch one read and
one check of every distinct viewer (:func:`gql_observer.graphql.visibility.verdicts`);
then every subscriber gets exactly the frame strawberry would send it if it ran
its operation alone (:mod:`gql_observer.graphql.results`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Hashable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from graphql import GraphQLError

from gql_observer.changes.groups import instance_group, model_group
from gql_observer.core.collector import collector
from gql_observer.fanout.delivery import CLOSED, Delivery, Subscription, tick
from gql_observer.graphql.analysis import Binding
from gql_observer.graphql.envelope import NOT_FOUND, OK, Action
from gql_observer.graphql.member import Member, Spec, spec
from gql_observer.graphql.relations import NOT_PLANNED, ReadPlan, merge, plan_read
from gql_observer.graphql.results import failure, payloads
from gql_observer.graphql.rows import deleted_instance, has_get_queryset, normalize_pk
from gql_observer.graphql.runtime import Runtime
from gql_observer.graphql.viewers import Viewer
from gql_observer.graphql.visibility import Verdict, deleted_verdicts, read, verdicts
from gql_observer.observe.definition import ObservedDefinition

__all__ = ["Watch", "admit", "fan_out"]

logger = logging.getLogger(__name__)


class Watch:
    """Every observed subscription of one instance of one type in one event loop."""

    def __init__(
        self, runtime: Runtime, definition: ObservedDefinition, pk: Any, key: Hashable
    ) -> None:
        self.runtime = runtime
        self.definition = definition
        self.pk = pk
        self.key = key
        self.members: dict[int, Member] = {}
        self.subscription: Subscription | None = None
        self.joined: asyncio.Future[None] = runtime.loop.create_future()
        self.closed = False
        #: Subscriptions waiting for the hub to join the group, to be attached.
        self.arriving = 0
        #: The relations each read fetches for the members (``NOT_PLANNED``: to merge).
        self._plan: ReadPlan | None = NOT_PLANNED
        #: Whether a delivery is being handled (read, checked, handed to the members).
        self.delivering = False
        self.task = asyncio.ensure_future(self._run())
        self.task.set_name("gql_observer.watch")

    def attach(self, member: Member) -> None:
        member.watch = self
        member.since = tick()
        self.members[id(member)] = member
        self._plan = NOT_PLANNED

    def detach(self, member: Member) -> None:
        if self.members.pop(id(member), None) is not None:
            self._plan = NOT_PLANNED
        member.watch = None
        self.close_if_idle()

    @property
    def plan(self) -> ReadPlan | None:
        """What every member's document reads of the instance's relations, merged."""
        if self._plan is NOT_PLANNED:
            self._plan = merge(m.analysis.read_plan for m in self.members.values())
        return self._plan

    def close_if_idle(self) -> None:
        """Close once nobody is a member or about to become one."""
        if not self.members and not self.arriving and not self.closed:
            self.close()

    def close(self) -> None:
        self._forget()
        self.task.cancel()

    def _forget(self) -> None:
        self.closed = True
        if self.runtime.watches.get(self.key) is self:
            del self.runtime.watches[self.key]

    async def _run(self) -> None:
        hub = self.runtime.hub
        prefix = self.runtime.settings.group_prefix
        label = self.definition.model_label
        try:
            self.subscription = await hub.join(
                instance_group(prefix, label, self.pk), model_group(prefix, label)
            )
        except BaseException as error:
            self._forget()
            self.joined.set_exception(error)
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        self.joined.set_result(None)
        try:
            while True:
                delivery = await self.subscription.next()
                if delivery is CLOSED:
                    self._end_all()
                    return
                members = [m for m in self.members.values() if m.since < delivery.arrived]
                if members:
                    self.delivering = True
                    try:
                        with self._pause():
                            await self._deliver(delivery, members)
                    finally:
                        self.delivering = False
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.exception("A watch failed")
            for member in list(self.members.values()):
                member.push(failure(member, error), final=True)
            self._end_all()
        finally:
            self._forget()
            hub.leave(self.subscription)

    def _pause(self) -> AbstractContextManager[None]:
        """The garbage collector paused while one event is delivered (``GC_PAUSE``):
        what the delivery allocates for its viewers would otherwise bring a full
        collection inside a later delivery, before its frames."""
        return collector.paused() if self.runtime.settings.gc_pause else nullcontext()

    def _end_all(self) -> None:
        for member in list(self.members.values()):
            self.detach(member)
            finish_soon(self.runtime, member)

    async def _deliver(self, delivery: Delivery, members: list[Member]) -> None:
        definition, reads = self.definition, self.runtime.reads
        viewers: dict[Viewer, Any] = {}
        for member in members:
            if member.viewer not in viewers:
                viewers[member.viewer] = member.info
        if delivery.action == "delete":
            assert delivery.last is not None
            last = deleted_instance(definition, delivery.last)
            seen = await deleted_verdicts(reads, definition, viewers, last)
            action, resync = Action.DELETE, False
        else:
            plan = self.plan
            seen = await delivery.read(
                self, lambda: verdicts(reads, definition, viewers, self.pk, plan)
            )
            action, resync = Action.UPDATE, delivery.resync
        # One envelope per distinct verdict (viewers with the same outcome share one).
        specs: dict[int, Spec] = {}
        targets: list[tuple[Member, Spec]] = []
        for member in members:
            if member.watch is not self:
                continue
            verdict = seen[member.viewer]
            item = specs.get(id(verdict))
            if item is None:
                item = specs[id(verdict)] = spec(action, verdict, resync=resync)
            targets.append((member, item))
        await fan_out(targets)
        for member in members:
            if member.closing and member.watch is self:
                self.detach(member)
                if not member.pending:
                    finish_soon(self.runtime, member)


async def fan_out(targets: list[tuple[Member, Spec]]) -> None:
    """Push each member its payload for its envelope: the shared part built and
    encoded once per shape and envelope."""
    waiting: list[tuple[Member, Spec, Awaitable[str]]] = []
    for member, item, payload in payloads(targets):
        if isinstance(payload, str):
            member.push(payload, item.final)
        else:
            waiting.append((member, item, payload))
    if not waiting:
        return
    outcomes = await asyncio.gather(*(p for _, _, p in waiting), return_exceptions=True)
    for (member, item, _), outcome in zip(waiting, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome
            logger.error("An execution failed", exc_info=outcome)
            member.push(failure(member, outcome), final=True)
        else:
            member.push(outcome, item.final)


def finish_soon(runtime: Runtime, member: Member, errors: list[GraphQLError] | None = None) -> None:
    """Send ``member``'s last frames, then ``complete`` (or ``errors``), in a task:
    they wait behind the member's writes (a slow client)."""
    runtime.finish_soon(asyncio.ensure_future(member.finish(errors)))


async def _watch(runtime: Runtime, definition: ObservedDefinition, pk: Any) -> Watch:
    key = (definition.field_name, pk)
    while True:
        watch = runtime.watches.get(key)
        if watch is None or watch.closed:
            watch = runtime.watches[key] = Watch(runtime, definition, pk, key)
        watch.arriving += 1
        try:
            await asyncio.shield(watch.joined)
        except BaseException:
            watch.arriving -= 1
            watch.close_if_idle()
            raise
        watch.arriving -= 1  # the caller attaches next, with no await in between
        if not watch.closed:
            return watch


async def admit(runtime: Runtime, member: Member, binding: Binding) -> None:
    """Start one observed subscription as the subscription resolver would: 404 for
    a pk that names nothing visible, else 201, then every change."""
    try:
        await _admit(runtime, member, member.analysis.definition, binding)
    except asyncio.CancelledError:
        member.leave()
        raise
    except Exception as error:
        logger.exception("An observed subscription failed to start")
        member.leave()
        member.pending = False
        member.push(failure(member, error), final=True)
        await member.finish()


async def _admit(
    runtime: Runtime, member: Member, definition: ObservedDefinition, binding: Binding
) -> None:
    if has_get_queryset(definition):
        member.info = member.make_info()
    analysis = member.analysis
    if analysis.read_plan is NOT_PLANNED:
        # Once per document: its selection (which holds no directive and no
        # argument on a relation where it plans any) is all the plan depends on.
        analysis.read_plan = plan_read(definition, member.info or member.make_info())
    value = normalize_pk(definition, binding.pk)
    if value is None:
        await _refuse(member, NOT_FOUND)
        return
    instance_pk = value
    if definition.lookup != "pk":
        found = await read(runtime.reads, definition, member.info, member.viewer, value)
        if found.instance is None:
            await _refuse(member, found.status)
            return
        instance_pk = found.instance.pk
    watch = await _watch(runtime, definition, instance_pk)
    if not member.alive:
        watch.close_if_idle()
        return  # the client completed it meanwhile
    # Attached before the first read: a commit between the two is then seen.
    watch.attach(member)
    verdict = await read(
        runtime.reads, definition, member.info, member.viewer, instance_pk, by_pk=True
    )
    if verdict.status != OK:
        member.leave()
        await _refuse(member, verdict.status)
        return
    first = await _payload(member, spec(Action.SUBSCRIBE_INSTANCE, verdict))
    if not member.activate(first):
        member.leave()
        await member.finish()


async def _refuse(member: Member, status: int) -> None:
    member.refused()
    payload = await _payload(member, spec(Action.SUBSCRIBE_INSTANCE, Verdict(status)))
    member.push(payload, final=True)
    await member.finish()


async def _payload(member: Member, item: Spec) -> str:
    """One member's payload for ``item``."""
    ((_, _, payload),) = payloads([(member, item)])
    return payload if isinstance(payload, str) else await payload
