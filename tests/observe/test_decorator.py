from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import strawberry
import strawberry_django
from django.contrib.auth.models import Group, User
from django.core.exceptions import ImproperlyConfigured

from gql_observer import observe
from gql_observer.observe.decorator import _lower_camel, plural


def test_the_default_field_name_is_the_model_name_in_lower_camel_case() -> None:
    assert _lower_camel("User") == "user"
    assert _lower_camel("BlogPost") == "blogPost"


def test_observe_must_decorate_a_strawberry_type() -> None:
    class Plain:
        pass

    with pytest.raises(ImproperlyConfigured, match=r"above @strawberry_django\.type"):
        observe(User)(Plain)


def test_observe_takes_a_model() -> None:
    with pytest.raises(ImproperlyConfigured, match="takes a Django model class"):
        observe(str)  # type: ignore[arg-type]


def test_a_lookup_field_must_exist_and_be_unique() -> None:
    with pytest.raises(ImproperlyConfigured, match="has no field 'slug'"):
        observe(User, lookup="slug")
    with pytest.raises(ImproperlyConfigured, match="must be unique"):
        observe(User, lookup="email")


def test_two_types_may_not_claim_one_field_name() -> None:
    with pytest.raises(ImproperlyConfigured, match="Two observed types want the GraphQL field"):

        @observe(Group, name="user")
        @strawberry_django.type(Group, fields=["id", "name"])
        class GroupType:
            pass


def test_only_exposed_fields_travel_in_a_delete() -> None:
    from schema_examples.users.schema import UserType

    definition = UserType.__gql_observer_definition__
    assert [f.attname for f in definition.exposed] == ["id", "username", "email"]


def test_undecorated_types_are_untouched() -> None:
    @strawberry.type
    class Other:
        x: int

    assert not hasattr(Other, "__gql_observer_definition__")


def test_without_channel_layers_one_in_memory_layer_serves_the_process(settings: Any) -> None:
    from channels.layers import InMemoryChannelLayer

    from gql_observer.changes.layers import channel_layer
    from gql_observer.core.conf import get_settings

    del settings.CHANNEL_LAYERS
    layer = channel_layer(get_settings())
    assert isinstance(layer, InMemoryChannelLayer)
    assert channel_layer(get_settings()) is layer


def test_a_missing_layer_alias_is_a_configuration_error(
    observer_settings: Callable[..., Any],
) -> None:
    from gql_observer.changes.layers import channel_layer
    from gql_observer.core.conf import get_settings

    observer_settings(CHANNEL_LAYER="nope")
    with pytest.raises(ImproperlyConfigured, match="CHANNEL_LAYERS has no such alias"):
        channel_layer(get_settings())


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("READ_BATCH_WINDOW", -0.1, r"'READ_BATCH_WINDOW'\] must be >= 0, not -0.1"),
        ("READ_BATCH_WINDOW", "10ms", r"'READ_BATCH_WINDOW'\] must be a number, not '10ms'"),
        ("PUBLISH_BATCH_WINDOW", None, r"'PUBLISH_BATCH_WINDOW'\] must be a number, not None"),
        ("READ_RETRY_WINDOW", True, r"'READ_RETRY_WINDOW'\] must be a number, not True"),
        ("HUB_CAPACITY", 0, r"'HUB_CAPACITY'\] must be > 0, not 0"),
        ("HUB_CAPACITY", 1e4, r"'HUB_CAPACITY'\] must be a whole number, not 10000.0"),
    ],
)
def test_a_batching_or_capacity_setting_of_the_wrong_kind_is_a_configuration_error(
    observer_settings: Callable[..., Any], key: str, value: Any, message: str
) -> None:
    from gql_observer.core.conf import get_settings

    observer_settings(**{key: value})
    with pytest.raises(ImproperlyConfigured, match=message):
        get_settings()


def test_batching_windows_of_zero_are_allowed(observer_settings: Callable[..., Any]) -> None:
    from gql_observer.core.conf import get_settings

    observer_settings(READ_BATCH_WINDOW=0, PUBLISH_BATCH_WINDOW=0.0)
    assert get_settings().read_batch_window == 0


def test_list_fields_are_named_in_plural_lower_camel_case() -> None:
    assert [plural(n) for n in ("User", "Note", "Category", "Box", "Day", "BlogPost")] == [
        "users",
        "notes",
        "categories",
        "boxes",
        "days",
        "blogPosts",
    ]
    from schema_examples.users.schema import UserFilter, UserType

    definition = UserType.__gql_observer_definition__
    assert (definition.list_name, definition.filters) == ("users", UserFilter)


def test_filters_must_be_a_strawberry_django_filter_type_of_the_model() -> None:
    from schema_examples.notes.schema import NoteFilter

    @strawberry.input
    class NotAFilter:
        username: str

    with pytest.raises(ImproperlyConfigured, match="takes a strawberry-django filter type"):
        observe(User, filters=NotAFilter)
    with pytest.raises(ImproperlyConfigured, match="the filter type is for Note, not User"):
        observe(User, filters=NoteFilter)


def test_a_list_name_needs_filters() -> None:
    with pytest.raises(ImproperlyConfigured, match="needs filters="):
        observe(User, list_name="people")


def test_a_list_name_may_not_take_another_types_field_name() -> None:
    @strawberry_django.filter_type(Group)
    class GroupFilter:
        name: strawberry.auto

    with pytest.raises(
        ImproperlyConfigured, match="Two observed types want the GraphQL field 'user'"
    ):

        @observe(Group, filters=GroupFilter, list_name="user")
        @strawberry_django.type(Group, fields=["id", "name"])
        class GroupType:
            pass
