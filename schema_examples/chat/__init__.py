"""A chat beside the GraphQL API: a Channels consumer of the user's own at
``ws/chat/<room>/`` and a GraphQL subscription written for strawberry's Channels
integration, both on the rooms' channel-layer groups (``chat_<room>``)."""
