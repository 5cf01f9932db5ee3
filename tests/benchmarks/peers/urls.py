"""HTTP side of the benchmark's Django servers (P0, P1, P2): the save trigger, W4's stats.
P0w (``p0_ws.py``) answers the same paths with the same functions."""

from __future__ import annotations

import time

from django.apps import apps
from django.contrib.auth.models import User
from django.http import HttpRequest, JsonResponse
from django.urls import path


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
    from gql_observer.hub import current_hub
    from gql_observer.watch import watches

    hub = current_hub()
    members = [m for watch in list(watches.values()) for m in list(watch.members.values())]
    return {
        "hub": hub.stats() if hub is not None else None,
        "watches": len(watches),
        "members": len(members),
        "members_busy": sum(bool(m.busy) for m in members),
        "members_dropped": sum(m.dropped for m in members),
    }


async def stats_view(request: HttpRequest) -> JsonResponse:
    """``p0_stats``, from an async view: it runs on the server's event loop."""
    return JsonResponse(p0_stats())


urlpatterns = [
    path("bench/save/", save_view),
    path("bench/ping/", ping_view),
    path("bench/stats/", stats_view),
]
