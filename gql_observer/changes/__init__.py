"""The write side: a committed change of an observed model becomes an event
(``signals``, ``events``) sent to its channel-layer group (``groups``) by this
process's publisher (``publish``). Nothing here knows about websockets."""
