"""The peer servers the fan-out benchmark compares gql_observer with.

P1 is djangochannelsrestframework's ``ObserverModelInstanceMixin`` as its docs show it,
P2 is strawberry's channels recipe (``listen_to_channel`` + a ``post_save`` handler).
Both run from ``.venv-bench`` so that neither peer touches the project's own venv.
"""
