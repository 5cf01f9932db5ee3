"""A runnable Django project: the DCRF "Observer model instance" example in GraphQL."""
