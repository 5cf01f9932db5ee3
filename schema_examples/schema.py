"""The demo's schema: the observed ``user`` and ``note`` fields plus their
mutations, and chat rooms on the channel layer (:mod:`schema_examples.chat`)."""

from __future__ import annotations

from strawberry.tools import merge_types

import gql_observer

from .chat.schema import ChatMutation, ChatSubscription
from .notes.schema import NoteMutation
from .users.schema import UserMutation

schema = gql_observer.build_schema(
    mutation=merge_types("Mutation", (UserMutation, NoteMutation, ChatMutation)),
    subscription=ChatSubscription,
)
