"""GraphQL: the schema's observed fields, the envelope, who may see what, and
watches that serve the subscribers of one instance together."""
