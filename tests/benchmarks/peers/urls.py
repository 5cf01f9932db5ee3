"""HTTP side of the peer servers: the benchmark's save trigger."""

from __future__ import annotations

import time

from django.contrib.auth.models import User
from django.http import HttpRequest, JsonResponse
from django.urls import path


def save_view(request: HttpRequest) -> JsonResponse:
    """Save each user in ``pk`` (comma list) with username ``<marker>-<pk>``, in order.

    A plain sync view, as a web worker would save; one request = one burst for W3.

    ``t_call`` / ``t_return`` are ``time.monotonic()`` just before ``save()`` is called and just
    after it returns; CLOCK_MONOTONIC is system-wide on Linux, so the load process can compare
    them with its own clock.
    """
    pks = [int(p) for p in request.GET["pk"].split(",")]
    marker = request.GET["marker"]
    t_call = t_return = 0.0
    for i, pk in enumerate(pks):
        user = User.objects.filter(pk=pk).first()
        assert user is not None, f"user {pk} missing: run the benchmark's prepare step"
        user.username = f"{marker}-{pk}"
        if i == 0:
            t_call = time.monotonic()
        user.save()
    t_return = time.monotonic()
    return JsonResponse({"t_call": t_call, "t_return": t_return, "saved": len(pks)})


def ping_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [
    path("bench/save/", save_view),
    path("bench/ping/", ping_view),
]
