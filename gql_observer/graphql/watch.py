"""Watches: the observed subscriptions of one instance in one process, served together.

A watch holds one hub subscription for its instance and a member for every
subscriber, each with its own viewer, variables, ``requestId`` and context.
Each change costs the watch one read and one check of every distinct viewer
(:func:`gql_observer.visibility.verdicts`); then every subscriber gets exactly
the frame strawberry would send it if it ran its operation alone:

- the part of a result that is the same for everybody (fields read off the
  instance alone, the envelope) is built and encoded once per distinct
  selection and verdict (:class:`gql_observer.plan.Shape`), and each member's
  ``requestId`` spliced into it;
- fields that may read the context (resolvers, permission classes, field
  extensions) are resolved per member by graphql-core, with that member's
  context and variables, and spliced in too;
- an operation whose selection no shape describes, or an event a shape cannot
  vouch for, is executed by graphql-core per member.

A member has no task and no queue: a frame is written inline, and only when
the socket pushes back does the rest move to a task, with at most one newer
frame waiting behind it (latest wins; a final frame is never dropped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Hashable
from copy import copy
from typing import Any, Final, NamedTuple, Protocol

from graphql import GraphQLError, GraphQLObjectType
from graphql.execution.collect_fields import collect_fields
from graphql.execution.executor import CollectedErrors, Executor
from graphql.pyutils import Path

from gql_observer.changes.groups import instance_group, model_group
from gql_observer.core.conf import get_settings
from gql_observer.fanout.hub import CLOSED, Delivery, Subscription, get_hub, tick
from gql_observer.graphql.analysis import Analysis, Binding
from gql_observer.graphql.envelope import (
    CREATED,
    DELETED,
    ERRORS,
    NOT_FOUND,
    OK,
    EnvelopeAction,
    envelope,
)
from gql_observer.graphql.frames import encode
from gql_observer.graphql.plan import REQUEST_ID, Miss, Shape, Template, placeholder
from gql_observer.graphql.visibility import (
    Verdict,
    Viewer,
    deleted_instance,
    deleted_verdicts,
    has_get_queryset,
    normalize_pk,
    read,
    verdicts,
)
from gql_observer.observe.definition import ObservedDefinition

__all__ = ["Member", "Socket", "Spec", "Watch", "admit", "fan_out", "spec", "watches"]

logger = logging.getLogger(__name__)

_REQUEST_ID: Final = placeholder(REQUEST_ID)


class Socket(Protocol):
    """What a member needs of its connection
    (:class:`gql_observer.transport.Connection` is one)."""

    send_timeout: float
    #: The type of a result message on this socket's protocol (``next``, ``data``).
    next_type: str
    root_value: Any
    scope: dict[str, Any]

    @property
    def context(self) -> Any:
        """``info.context`` of the connection's operations."""

    def is_open(self, operation: Any) -> bool: ...

    def write_frame(self, frame: str) -> Coroutine[Any, Any, None]:
        """Write one frame. Its first step runs inline, in the watch's task: up to its
        first suspension it must not use :func:`asyncio.current_task` (no
        :func:`asyncio.timeout`, no ``TaskGroup``), which would act on the watch's task."""
        ...

    def give_up(self) -> None: ...

    async def finish(self, operation: Any, errors: list[GraphQLError] | None) -> None: ...


class Spec(NamedTuple):
    """The envelope one member gets for one event (before its own ``requestId``)."""

    action: EnvelopeAction
    status: int
    instance: Any
    errors: tuple[str, ...]
    resync: bool
    final: bool

    @property
    def key(self) -> Hashable:
        return (self.action, self.status, id(self.instance), self.resync)


def spec(action: EnvelopeAction, verdict: Verdict, *, resync: bool = False) -> Spec:
    """The envelope of ``verdict`` for ``action``: the instance (a delete's last
    values, final), or a refusal without any field of it (final)."""
    if verdict.status == OK:
        if action == "subscribe_instance":
            return Spec(action, CREATED, None, (), False, False)
        status = DELETED if action == "delete" else OK
        return Spec(action, status, verdict.instance, (), resync, action == "delete")
    return Spec(action, verdict.status, None, ERRORS.get(verdict.status, ()), False, True)


class _HolePlan(NamedTuple):
    """Where graphql-core resolves the holes of one ``data`` object of a selection."""

    data_key: str
    object_type: GraphQLObjectType
    data_type: Any
    data_details: Any
    path: Path
    fields: dict[str, Any]


class Member:
    """One subscriber of a watch: its operation, viewer, values and connection."""

    __slots__ = (
        "_executor",
        "_held",
        "_next",
        "_prefix",
        "_timer",
        "_writer",
        "analysis",
        "closing",
        "dropped",
        "info",
        "operation",
        "pending",
        "request_id",
        "rid",
        "since",
        "socket",
        "viewer",
        "watch",
    )

    def __init__(
        self, socket: Socket, operation: Any, analysis: Analysis, binding: Binding, viewer: Viewer
    ) -> None:
        self.socket = socket
        self.operation = operation
        self.analysis = analysis
        self.viewer = viewer
        self.request_id = binding.request_id
        #: The member's ``requestId`` as it goes on the wire.
        self.rid = encode(binding.request_id)
        self._prefix = f'{{"id":{encode(operation.id)},"type":"{socket.next_type}","payload":'
        self.watch: Watch | None = None
        self.info: Any = None
        self._executor: Any = None
        self.since = 0
        #: Before its 201 is sent: the latest frame (and whether it is final).
        self.pending = True
        self._held: tuple[str, bool] | None = None
        self.closing = False
        self._next: str | None = None
        self._writer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: Frames skipped because a newer one came before the socket took them.
        self.dropped = 0

    # ---- executing its own operation -------------------------------------------------

    def executor(self) -> Any:
        """This member's graphql-core executor (built on first need)."""
        if self._executor is None:
            socket, operation = self.socket, self.operation
            executor = self.analysis.executor(
                socket.context, operation.variables, socket.root_value
            )
            assert not isinstance(executor, list), "bind() coerced these variables"
            self._executor = executor
        return self._executor

    def make_info(self) -> Any:
        """The resolve info of the root field, as the subscription resolver gets it
        (``get_queryset`` is called with it)."""
        executor = self.executor()
        analysis = self.analysis
        root_type = executor.schema.subscription_type
        key = analysis.root_node.alias or analysis.root_node.name
        raw = executor.build_resolve_info(
            analysis.field_def,
            [analysis.root_node],
            root_type,
            Path(None, key.value, root_type.name),
        )
        strawberry_field = analysis.field_def.extensions[_BACKREF]
        return analysis.schema.config.info_class(_raw_info=raw, _field=strawberry_field)

    def envelope(self, item: Spec) -> Any:
        return envelope(
            self.analysis.definition,
            item.action,
            item.status,
            self.request_id,
            item.instance,
            list(item.errors),
            resync=item.resync,
        )

    def execute(self, item: Spec) -> str | Awaitable[str]:
        """This member's payload for ``item``, executed by graphql-core alone."""
        base = self.executor()
        executor = Executor.build_per_event_executor(base, self.envelope(item))
        executor._relevant_sub_fields = {}
        result = executor.execute_operation(False)
        if executor.is_awaitable(result):

            async def awaited() -> str:
                return self._payload(await result)

            return awaited()
        return self._payload(result)

    def _payload(self, result: Any) -> str:
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            errors = self.analysis.errors_of(list(result.errors))
            payload["errors"] = [error.formatted for error in errors]
        return encode(payload)

    def fill(self, shape: Shape, data: dict[str, Any], item: Spec) -> str | Awaitable[str]:
        """This member's payload from the shared ``data`` of ``shape``, its holes
        resolved by graphql-core with this member's context."""
        executor = copy(self.executor())
        executor.root_value = self.envelope(item)
        executor.collected_errors = CollectedErrors()
        executor._relevant_sub_fields = {}
        results: dict[str, Any] = {}
        waiting: dict[str, Awaitable[Any]] = {}
        envelope_data = data[shape.root_key]
        plans = [p for p in _holes(self) if isinstance(envelope_data.get(p.data_key), dict)]
        for plan in plans:
            try:
                value = executor.execute_fields(
                    plan.object_type, item.instance, plan.path, plan.fields, None
                )
            except Exception as error:
                executor.handle_field_error(error, plan.data_type, plan.data_details, plan.path)
                value = None
            if executor.is_awaitable(value):
                waiting[plan.data_key] = value
            else:
                results[plan.data_key] = value
        if waiting:

            async def awaited() -> str:
                outcomes = await asyncio.gather(*waiting.values(), return_exceptions=True)
                for plan in plans:
                    if plan.data_key not in waiting:
                        continue
                    outcome = outcomes[list(waiting).index(plan.data_key)]
                    if isinstance(outcome, BaseException):
                        if not isinstance(outcome, Exception):
                            raise outcome
                        executor.handle_field_error(
                            outcome, plan.data_type, plan.data_details, plan.path
                        )
                        outcome = None
                    results[plan.data_key] = outcome
                return self._merged(shape, data, results, executor.collected_errors.errors)

            return awaited()
        return self._merged(shape, data, results, executor.collected_errors.errors)

    def _merged(
        self,
        shape: Shape,
        data: dict[str, Any],
        results: dict[str, Any],
        errors: list[GraphQLError],
    ) -> str:
        shared = data[shape.root_key]
        own: dict[str, Any] = {}
        for key, value in shared.items():
            if key in results:
                fields = results[key]
                if fields is None:
                    own[key] = None  # a non-null hole failed: the object is null
                    continue
                slots = {placeholder(h.slot): h.key for h in shape.holes if h.data_key == key}
                own[key] = {
                    k: fields[slots[v]] if isinstance(v, str) and v in slots else v
                    for k, v in value.items()
                }
            elif value == _REQUEST_ID:
                own[key] = self.request_id
            else:
                own[key] = value
        payload: dict[str, Any] = {"data": {shape.root_key: own}}
        if errors:
            masked = self.analysis.errors_of(list(errors))
            payload["errors"] = [error.formatted for error in masked]
        return encode(payload)

    # ---- writing -----------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """Whether the operation is still open on its connection."""
        return self.socket.is_open(self.operation)

    @property
    def busy(self) -> bool:
        """Whether a write is waiting for the socket."""
        return self._writer is not None

    def push(self, payload: str, final: bool = False) -> None:
        """Write ``payload`` (an encoded ``next`` payload) now, or after the write in
        progress; latest wins, and nothing replaces a final one."""
        if self.closing:
            return
        frame = f"{self._prefix}{payload}}}"
        if self.pending:
            if self._held is None or not self._held[1]:
                self._held = (frame, final)
            return
        self._push(frame, final)

    def _push(self, frame: str, final: bool) -> None:
        if final:
            self.closing = True
        if self._writer is not None:
            if self._next is not None:
                self.dropped += 1
            self._next = frame
            return
        if self.alive:
            self._write_inline(frame)

    def activate(self, first: str) -> bool:
        """Send the 201 (``first``), then what came meanwhile; whether the member
        goes on (no final frame came)."""
        held, self._held, self.pending = self._held, None, False
        self._push(f"{self._prefix}{first}}}", False)
        if held is not None:
            self._push(*held)
        return not self.closing

    def _write_inline(self, frame: str) -> None:
        coro = self.socket.write_frame(frame)
        try:
            awaited = coro.send(None)
        except StopIteration:
            return  # written: the usual case, no task, no timer
        except Exception:
            logger.debug("Could not write to a member's socket", exc_info=True)
            return
        # The socket pushes back: finish this write (and newer frames) in a task.
        self._writer = asyncio.ensure_future(self._resume(coro, awaited))
        timeout = self.socket.send_timeout
        if timeout:
            self._timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)

    async def _resume(self, coro: Coroutine[Any, Any, None], awaited: Any) -> None:
        try:
            # Drive the suspended write as a task would: wait for what it waits
            # for, then let it go on (it reads the outcome itself).
            while True:
                if isinstance(awaited, asyncio.Future):
                    await asyncio.wait([awaited])
                else:
                    await asyncio.sleep(0)
                try:
                    awaited = coro.send(None)
                except StopIteration:
                    break
            while self._next is not None and self.alive:
                frame, self._next = self._next, None
                await self.socket.write_frame(frame)
        except asyncio.CancelledError:
            coro.close()  # the connection was given up (send timeout) or is closing
        except Exception:
            logger.debug("Could not write to a member's socket", exc_info=True)
        finally:
            self._writer = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        self.socket.give_up()
        if self._writer is not None:
            self._writer.cancel()

    def leave(self) -> None:
        """The client is done with this subscription (or gone)."""
        if self.watch is not None:
            self.watch.detach(self)
        if self._writer is not None:
            self._writer.cancel()

    async def finish(self, errors: list[GraphQLError] | None = None) -> None:
        """Send what is left, then ``complete`` (or ``errors``)."""
        while self._writer is not None:
            await asyncio.wait([self._writer])
        await self.socket.finish(self.operation, errors)


_BACKREF: Final = "strawberry-definition"


def _holes(member: Member) -> tuple[_HolePlan, ...]:
    """Where the holes of the member's document are resolved (worked out once per
    document, with the first member's executor)."""
    analysis = member.analysis
    if analysis.holes is None:
        analysis.holes = _hole_plans(member)
    holes: tuple[_HolePlan, ...] = analysis.holes
    return holes


def _hole_plans(member: Member) -> tuple[_HolePlan, ...]:
    shape = member.analysis.shape
    assert shape is not None
    executor = member.executor()
    schema = executor.schema
    root_type = schema.subscription_type
    collected = collect_fields(
        schema, executor.fragments, executor.variable_values, root_type, executor.operation
    )
    root_details = collected.grouped_field_set[shape.root_key]
    envelope_type = root_type.fields[root_details[0].node.name.value].type.of_type
    envelope_fields = executor.collect_subfields(envelope_type, root_details).grouped_field_set
    root_path = Path(None, shape.root_key, root_type.name)
    plans = []
    for data_key in shape.data_keys:
        keys = [h.key for h in shape.holes if h.data_key == data_key]
        if not keys:
            continue
        data_details = envelope_fields[data_key]
        data_type = envelope_type.fields["data"].type
        object_type = data_type.of_type if hasattr(data_type, "of_type") else data_type
        fields = executor.collect_subfields(object_type, data_details).grouped_field_set
        plans.append(
            _HolePlan(
                data_key,
                object_type,
                data_type,
                data_details,
                Path(root_path, data_key, envelope_type.name),
                {k: fields[k] for k in fields if k in keys},
            )
        )
    return tuple(plans)


class Watch:
    """Every observed subscription of one instance of one type in this process."""

    def __init__(self, definition: ObservedDefinition, pk: Any, key: Hashable) -> None:
        self.definition = definition
        self.pk = pk
        self.key = key
        self.members: dict[int, Member] = {}
        self.subscription: Subscription | None = None
        self.loop = asyncio.get_running_loop()
        self.joined: asyncio.Future[None] = self.loop.create_future()
        self.closed = False
        #: Subscriptions waiting for the hub to join the group, to be attached.
        self.arriving = 0
        self.task = asyncio.ensure_future(self._run())
        self.task.set_name("gql_observer.watch")

    def attach(self, member: Member) -> None:
        member.watch = self
        member.since = tick()
        self.members[id(member)] = member

    def detach(self, member: Member) -> None:
        self.members.pop(id(member), None)
        member.watch = None
        self.close_if_idle()

    def close_if_idle(self) -> None:
        """Close once nobody is a member or about to become one."""
        if not self.members and not self.arriving and not self.closed:
            self.close()

    def close(self) -> None:
        self.closed = True
        if watches.get(self.key) is self:
            del watches[self.key]
        self.task.cancel()

    async def _run(self) -> None:
        hub = get_hub()
        prefix = get_settings()["GROUP_PREFIX"]
        label = self.definition.model_label
        try:
            self.subscription = await hub.join(
                instance_group(prefix, label, self.pk), model_group(prefix, label)
            )
        except BaseException as error:
            self.closed = True
            if watches.get(self.key) is self:
                del watches[self.key]
            self.joined.set_exception(error)
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        self.joined.set_result(None)
        try:
            while True:
                delivery = await self.subscription.next()
                if delivery is CLOSED:
                    self._end_all(None)
                    return
                members = [m for m in self.members.values() if m.since < delivery.arrived]
                if members:
                    await self._deliver(delivery, members)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.exception("A watch failed")
            for member in list(self.members.values()):
                member.push(_failure(member, error), final=True)
            self._end_all(None)
        finally:
            self.closed = True
            if watches.get(self.key) is self:
                del watches[self.key]
            hub.leave(self.subscription)

    def _end_all(self, errors: list[GraphQLError] | None) -> None:
        for member in list(self.members.values()):
            self.detach(member)
            _finish_soon(member, errors)

    async def _deliver(self, delivery: Delivery, members: list[Member]) -> None:
        definition = self.definition
        viewers: dict[Viewer, Any] = {}
        for member in members:
            viewers.setdefault(member.viewer, member.info)
        if delivery.action == "delete":
            assert delivery.last is not None
            last = deleted_instance(definition, delivery.last)
            seen = await deleted_verdicts(definition, viewers, last)
            items = {v: spec("delete", seen[v]) for v in viewers}
        else:
            found = await delivery.read(self, lambda: verdicts(definition, viewers, self.pk))
            items = {v: spec("update", found[v], resync=delivery.resync) for v in viewers}
        await fan_out([(m, items[m.viewer]) for m in members if m.watch is self])
        for member in members:
            if member.closing and member.watch is self:
                self.detach(member)
                if not member.pending:
                    _finish_soon(member, None)


async def fan_out(targets: list[tuple[Member, Spec]]) -> None:
    """Push each member its payload for its envelope: the shared part built and
    encoded once per shape and envelope."""
    waiting: list[tuple[Member, Spec, Awaitable[str]]] = []
    for member, item, payload in _payloads(targets):
        if isinstance(payload, str):
            member.push(payload, item.final)
        else:
            waiting.append((member, item, payload))
    if not waiting:
        return
    payloads = await asyncio.gather(*(p for _, _, p in waiting), return_exceptions=True)
    for (member, item, _), outcome in zip(waiting, payloads, strict=True):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome
            logger.error("An execution failed", exc_info=outcome)
            member.push(_failure(member, outcome), final=True)
        else:
            member.push(outcome, item.final)


def _payloads(
    targets: list[tuple[Member, Spec]],
) -> list[tuple[Member, Spec, str | Awaitable[str]]]:
    groups: dict[Hashable, list[tuple[Member, Spec]]] = {}
    for member, item in targets:
        shape = member.analysis.shape
        key = (member.analysis.shape_key, item.key) if shape is not None else id(member)
        groups.setdefault(key, []).append((member, item))
    out: list[tuple[Member, Spec, str | Awaitable[str]]] = []
    for group in groups.values():
        first, item = group[0]
        shape = first.analysis.shape
        data: dict[str, Any] | None = None
        template: Template | None = None
        if shape is not None:
            shared = envelope(
                first.analysis.definition,
                item.action,
                item.status,
                _REQUEST_ID,
                item.instance,
                list(item.errors),
                resync=item.resync,
            )
            try:
                data = shape.result(shared)
            except Miss:
                data = None
            else:
                template = shape.template(encode({"data": data}), data)
        for member, item in group:
            payload: str | Awaitable[str]
            if shape is None or data is None or template is None:
                payload = member.execute(item)
            elif not template.slots:
                payload = template.parts[0]
            elif max(template.slots) > REQUEST_ID:
                payload = member.fill(shape, data, item)
            else:
                payload = member.rid.join(template.parts)
            out.append((member, item, payload))
    return out


def _failure(member: Member, error: Exception) -> str:
    """What strawberry sends when the subscription's source fails: a result with
    the (masked) error and no data, after which the stream completes."""
    coerced = (
        error if isinstance(error, GraphQLError) else GraphQLError(str(error), original_error=error)
    )
    errors = member.analysis.errors_of([coerced])
    return encode({"data": None, "errors": [e.formatted for e in errors]})


def _finish_soon(member: Member, errors: list[GraphQLError] | None) -> None:
    # In a task: the complete waits behind the member's writes (a slow client).
    task = asyncio.ensure_future(member.finish(errors))
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)


_finishing: set[asyncio.Task[None]] = set()

#: The live watches of this process, by (loop, field, pk).
watches: dict[Hashable, Watch] = {}


async def _watch(definition: ObservedDefinition, pk: Any) -> Watch:
    loop = asyncio.get_running_loop()
    key = (id(loop), definition.field_name, pk)
    while True:
        watch = watches.get(key)
        if watch is None or watch.closed or watch.loop is not loop:
            watch = watches[key] = Watch(definition, pk, key)
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


async def admit(member: Member, binding: Binding) -> None:
    """Start one observed subscription as the subscription resolver would: 404 for
    a pk that names nothing visible, else 201, then every change."""
    try:
        await _admit(member, member.analysis.definition, binding)
    except asyncio.CancelledError:
        member.leave()
        raise
    except Exception as error:
        logger.exception("An observed subscription failed to start")
        member.leave()
        member.pending = False
        member.push(_failure(member, error), final=True)
        await member.finish()


async def _admit(member: Member, definition: ObservedDefinition, binding: Binding) -> None:
    if has_get_queryset(definition):
        member.info = member.make_info()
    value = normalize_pk(definition, binding.pk)
    if value is None:
        await _refuse(member, NOT_FOUND)
        return
    instance_pk = value
    if definition.lookup != "pk":
        found = await read(definition, member.info, member.viewer, value)
        if found.instance is None:
            await _refuse(member, found.status)
            return
        instance_pk = found.instance.pk
    watch = await _watch(definition, instance_pk)
    if not member.alive:
        watch.close_if_idle()
        return  # the client completed it meanwhile
    # Attached before the first read: a commit between the two is then seen.
    watch.attach(member)
    verdict = await read(definition, member.info, member.viewer, instance_pk, by_pk=True)
    if verdict.status != OK:
        member.leave()
        await _refuse(member, verdict.status)
        return
    first = await _payload(member, spec("subscribe_instance", verdict))
    if not member.activate(first):
        member.leave()
        await member.finish()


async def _refuse(member: Member, status: int) -> None:
    member.pending = False
    member._held = None
    payload = await _payload(member, spec("subscribe_instance", Verdict(status)))
    member.push(payload, final=True)
    await member.finish()


async def _payload(member: Member, item: Spec) -> str:
    """One member's payload for ``item``."""
    ((_, _, payload),) = _payloads([(member, item)])
    return payload if isinstance(payload, str) else await payload
