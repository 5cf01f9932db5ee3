"""Django's system checks report a wrong ``GQL_OBSERVER`` and the in-memory
channel layer outside ``DEBUG`` (``manage.py check``, as a user runs it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import Error, Warning, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from gql_observer.checks import BAD_SETTINGS, IN_MEMORY_LAYER, MISSING_LAYER

ROOT = Path(__file__).resolve().parents[2]
REDIS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}
IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def ours() -> list[Any]:
    return [m for m in run_checks() if str(m.id).startswith("gql_observer.")]


def test_a_good_configuration_passes(settings: Any) -> None:
    settings.CHANNEL_LAYERS, settings.DEBUG = REDIS, False
    assert ours() == []


def test_a_wrong_setting_is_an_error_naming_it(
    settings: Any, observer_settings: Callable[..., Any]
) -> None:
    settings.CHANNEL_LAYERS = REDIS
    observer_settings(READ_BATCH_WINDOW="10ms", HUB_CAPACITY=0, NOPE=1)
    found = ours()
    assert [(type(m), m.id) for m in found] == [(Error, BAD_SETTINGS)] * 3
    messages = [m.msg for m in found]
    assert messages[0].startswith("Unknown GQL_OBSERVER setting(s): NOPE. Known: SCHEMA,")
    assert messages[1:] == [
        "GQL_OBSERVER['READ_BATCH_WINDOW'] must be a number, not '10ms'.",
        "GQL_OBSERVER['HUB_CAPACITY'] must be > 0, not 0.",
    ]


def test_a_setting_that_is_not_a_dict_is_an_error(settings: Any) -> None:
    settings.GQL_OBSERVER = ["SCHEMA"]
    assert [(m.id, m.msg) for m in ours()] == [
        (BAD_SETTINGS, "settings.GQL_OBSERVER must be a dict, not list.")
    ]


def test_a_missing_layer_alias_is_an_error(
    settings: Any, observer_settings: Callable[..., Any]
) -> None:
    settings.CHANNEL_LAYERS = REDIS
    observer_settings(CHANNEL_LAYER="events")
    assert [(m.id, m.msg) for m in ours()] == [
        (
            MISSING_LAYER,
            "GQL_OBSERVER['CHANNEL_LAYER'] is 'events' but CHANNEL_LAYERS has no such "
            "alias (it has: default).",
        )
    ]


@pytest.mark.parametrize("layers", [IN_MEMORY, None], ids=["in-memory", "no CHANNEL_LAYERS"])
def test_the_in_memory_layer_outside_debug_is_a_warning(settings: Any, layers: Any) -> None:
    settings.CHANNEL_LAYERS, settings.DEBUG = layers, False
    (found,) = ours()
    assert (type(found), found.id) == (Warning, IN_MEMORY_LAYER)
    assert "never reach this process's subscribers" in found.msg


def test_the_in_memory_layer_in_debug_is_fine(settings: Any) -> None:
    settings.CHANNEL_LAYERS, settings.DEBUG = IN_MEMORY, True
    assert ours() == []


def test_the_check_command_fails_on_a_wrong_setting(
    settings: Any, observer_settings: Callable[..., Any]
) -> None:
    observer_settings(SEND_TIMEOUT=-1)
    expected = r"gql_observer\.E001.*'SEND_TIMEOUT'\] must be >= 0"
    with pytest.raises(SystemCheckError, match=expected):
        call_command("check", stdout=StringIO(), stderr=StringIO())


def _check(settings_module: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings_module,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DEBUG": "0",
    }
    env.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "django", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


def test_manage_py_check_reports_a_wrong_gql_observer(tmp_path: Path) -> None:
    (tmp_path / "wrong_settings.py").write_text(
        "from schema_examples.settings import *  # noqa\n"
        "GQL_OBSERVER = {**GQL_OBSERVER, 'MAX_QUERY_DEPTH': 'deep'}\n"
    )
    done = _check("wrong_settings", tmp_path)
    assert done.returncode == 1, done
    assert (
        "settings.GQL_OBSERVER: (gql_observer.E001) GQL_OBSERVER['MAX_QUERY_DEPTH'] must be "
        "a whole number, not 'deep'." in done.stderr
    ), done.stderr
    assert "Traceback" not in done.stderr


def test_manage_py_check_warns_about_the_demos_in_memory_layer(tmp_path: Path) -> None:
    done = _check("schema_examples.settings", tmp_path)
    assert done.returncode == 0, done
    assert f"({IN_MEMORY_LAYER}) gql_observer uses the in-memory channel layer" in done.stderr
