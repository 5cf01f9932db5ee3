from __future__ import annotations

from django.conf import settings
from django.db import models

import gql_observer


class Note(models.Model):
    """A note only its owner may see."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notes"
    )
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)

    # update(), bulk_update() and bulk_create() reach note(pk) subscribers too.
    objects = gql_observer.ObservedManager()

    def __str__(self) -> str:
        return self.title
