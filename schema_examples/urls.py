"""Django's own URLs: none; GraphQL is served by the ASGI application."""

from __future__ import annotations

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
