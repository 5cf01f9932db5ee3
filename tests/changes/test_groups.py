from __future__ import annotations

import re

import pytest

from gql_observer.changes.groups import MAX_GROUP_NAME, instance_group, model_group

VALID = re.compile(r"^[a-zA-Z0-9\-_.]+$")


def test_a_simple_pk_names_the_group_readably() -> None:
    assert instance_group("gqlobs", "auth.user", 1) == "gqlobs.auth.user.1"


@pytest.mark.parametrize("pk", ["a b", "{uuid}", "ü", "x" * 200, "a/b", ""])
def test_any_pk_gives_a_valid_bounded_group_name(pk: str) -> None:
    name = instance_group("gqlobs", "auth.user", pk)
    assert VALID.match(name)
    assert len(name) <= MAX_GROUP_NAME


def test_distinct_unsafe_pks_get_distinct_groups() -> None:
    assert instance_group("p", "a.b", "x y") != instance_group("p", "a.b", "x z")


def test_a_model_group_is_readable_and_apart_from_every_instance_group() -> None:
    assert model_group("gqlobs", "auth.user") == "gqlobs-model.auth.user"
    # Instance groups all start with "<prefix>.": no pk can name the model group.
    assert not model_group("gqlobs", "auth.user").startswith("gqlobs.")


@pytest.mark.parametrize("label", ["app.model", "x" * 200])
def test_any_model_label_gives_a_valid_bounded_model_group(label: str) -> None:
    name = model_group("gqlobs", label)
    assert VALID.match(name)
    assert len(name) <= MAX_GROUP_NAME
