"""HTTP side of the benchmark's Django servers (P0, P1, P2): the save trigger, the logged-in
viewers' credentials, W4's stats. This is the benchmark servers' own urlconf (``ROOT_URLCONF`` of
``peers/settings.py`` and ``peers/p0_settings.py``): nothing else routes to these views."""

from __future__ import annotations

import time
from datetime import timedelta
from importlib import import_module
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.utils import timezone
from django.utils.crypto import get_random_string

from tests.benchmarks.peers import queries
from tests.benchmarks.peers.list_filters import l2_username


def save_burst(pks: list[int], marker: str) -> dict[str, float | int]:
    """Save each user in ``pks`` with username ``<marker>-<pk>``, in order (W1, W3's trigger).

    ``t_call`` / ``t_return`` are ``time.monotonic()`` just before ``save()`` is called and just
    after it returns; CLOCK_MONOTONIC is system-wide on Linux, so the load process can compare
    them with its own clock.
    """
    t_call = t_return = 0.0
    for i, pk in enumerate(pks):
        user = User.objects.filter(pk=pk).first()
        assert user is not None, f"user {pk} missing: run the benchmark's prepare step"
        user.username = f"{marker}-{pk}"
        if i == 0:
            t_call = time.monotonic()
        user.save()
    t_return = time.monotonic()
    return {"t_call": t_call, "t_return": t_return, "saved": len(pks)}


def save_view(request: HttpRequest) -> JsonResponse:
    """``save_burst`` of ``pk`` (comma list) and ``marker``: a plain sync view, as a web worker
    would save; one request = one burst for W3."""
    pks = [int(p) for p in request.GET["pk"].split(",")]
    return JsonResponse(save_burst(pks, request.GET["marker"]))


def create_view(request: HttpRequest) -> JsonResponse:
    """The live-lists benchmark's trigger (L1, L2): ``User.objects.create`` in a plain sync
    view, each create its own transaction. ``email=<e>``: one user ``<marker>-l1`` with that
    e-mail (L1); ``n=<n>&filters=<f>``: n users, the i-th named ``f<i % f>-<marker>-<i>``
    (L2). ``t_call`` / ``t_return`` as in ``save_burst``."""
    marker = request.GET["marker"]
    if "email" in request.GET:
        rows = [(f"{marker}-l1", request.GET["email"])]
    else:
        filters = int(request.GET["filters"])
        rows = [(l2_username(marker, filters, i), "") for i in range(int(request.GET["n"]))]
    t_call = time.monotonic()
    for username, email in rows:
        User.objects.create(username=username, email=email)
    return JsonResponse({"t_call": t_call, "t_return": time.monotonic(), "saved": len(rows)})


async def queries_view(request: HttpRequest) -> JsonResponse:
    """The statements this server process ran so far (``queries.py``)."""
    return JsonResponse(queries.snapshot())


def ping_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def p0_stats() -> dict[str, object]:
    """gql_observer's own counters, when it is installed (P0), for W4; ``{}`` for the peers.

    Read on the server's event loop, where the hub and the watches live:
    ``hub``: ``Hub.stats()`` (``pending``: deliveries waiting, at most one per hub
    subscription; ``dropped``: deliveries merged into a later one). ``watches``: one per
    observed instance (and type) with subscribers in this process; ``members``: their
    subscribers, how many have a write waiting for their socket (``busy``) and how many frames
    they skipped because a newer one came first (``dropped``).
    """
    if not apps.is_installed("gql_observer"):
        return {}
    from gql_observer import hub_stats
    from gql_observer.graphql.runtime import running

    current = running()
    watches = current.watches if current is not None else {}
    members = [m for watch in list(watches.values()) for m in list(watch.members.values())]
    return {
        "hub": hub_stats(),
        "watches": len(watches),
        "members": len(members),
        "members_busy": sum(bool(m.busy) for m in members),
        "members_dropped": sum(m.dropped for m in members),
    }


#: Session keys this process made, by user pk (the peers' logged-in viewers).
_SESSIONS: dict[int, str] = {}


def _session_keys(users: list[User]) -> list[str]:
    """A logged-in session for each of ``users``, made with the session engine as
    ``django.contrib.auth.login`` would fill it (user id, backend, the user's session hash).
    The first call of a process deletes the sessions earlier runs left in the benchmark's
    database (its own schema or file); the sessions are inserted in one batch."""
    engine = import_module(settings.SESSION_ENGINE)
    store_class: Any = engine.SessionStore
    model = store_class.get_model_class() if hasattr(store_class, "get_model_class") else None
    if not _SESSIONS and model is not None:
        model.objects.all().delete()
    missing = [u for u in users if u.pk not in _SESSIONS]
    rows = []
    for user in missing:
        store = store_class()
        data = {
            SESSION_KEY: str(user.pk),
            BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
            HASH_SESSION_KEY: user.get_session_auth_hash(),
        }
        if model is None:  # not a database-backed engine: one create() each
            store.update(data)
            store.create()
            _SESSIONS[user.pk] = str(store.session_key)
            continue
        key = get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789")
        expire = timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE)
        rows.append(model(session_key=key, session_data=store.encode(data), expire_date=expire))
        _SESSIONS[user.pk] = key
    if rows:
        model.objects.bulk_create(rows, batch_size=1000)
    return [_SESSIONS[u.pk] for u in users]


def credentials(n: int) -> dict[str, Any]:
    """Credentials of users 1..n, one per logged-in viewer (W1v, W1p, W1x): gql_observer
    tokens (``issue_token``, sent in ``connection_init``) when this server is gql_observer's,
    else session keys (the ``Cookie`` of the handshake, read by Channels'
    ``AuthMiddlewareStack``)."""
    users = list(User.objects.filter(pk__gte=1, pk__lte=n).order_by("pk"))
    if len(users) < n:
        raise ValueError(f"only {len(users)} of users 1..{n}: run the benchmark's prepare step")
    if apps.is_installed("gql_observer"):
        from gql_observer import issue_token

        return {"kind": "token", "credentials": [issue_token(u) for u in users]}
    return {
        "kind": "session",
        "cookie": settings.SESSION_COOKIE_NAME,
        "credentials": _session_keys(users),
    }


def credentials_view(request: HttpRequest) -> JsonResponse:
    """``credentials`` of ``n`` users: a plain sync view, on the benchmark's servers only."""
    return JsonResponse(credentials(int(request.GET["n"])))


async def stats_view(request: HttpRequest) -> JsonResponse:
    """``p0_stats``, from an async view: it runs on the server's event loop."""
    return JsonResponse(p0_stats())


urlpatterns = [
    path("bench/save/", save_view),
    path("bench/ping/", ping_view),
    path("bench/create/", create_view),
    path("bench/queries/", queries_view),
    path("bench/stats/", stats_view),
    path("bench/credentials/", credentials_view),
]
