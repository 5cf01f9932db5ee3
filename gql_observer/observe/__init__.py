"""What is observed: the ``observe`` decorator, the frozen definition it stores on
a type, and the registry of observed types."""
