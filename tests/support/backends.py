"""An object-permission backend, as django-guardian is one: ``has_perm(perm, obj)``."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend


class ObjectPermissionBackend(ModelBackend):
    """Grants a permission on an object to whoever holds it on the model."""

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        if obj is None:
            return False  # ModelBackend answers the model-level question
        return bool(super().has_perm(user_obj, perm))
