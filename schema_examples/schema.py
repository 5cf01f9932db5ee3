"""The demo's schema: the observed ``user`` fields plus the user mutations."""

from __future__ import annotations

import gql_observer

from .users.schema import Mutation

schema = gql_observer.build_schema(mutation=Mutation)
