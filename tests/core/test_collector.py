"""The garbage collector's pause around deliveries: nested and concurrent blocks
share one pause, the limit ends a pause that lasts, a collector the application
disabled stays disabled, and an exception releases the pause."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator

import pytest

from gql_observer.core.collector import Collector


@pytest.fixture(autouse=True)
def collector_enabled() -> Iterator[None]:
    """Every test starts with the collector enabled and leaves it as it found it."""
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def until(condition: object, timeout: float = 5.0) -> None:
    """Poll ``condition`` (a callable) until it holds, for at most ``timeout`` s."""
    assert callable(condition)
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.01)


def test_a_block_disables_the_collector_and_its_end_enables_it() -> None:
    pauser = Collector()
    with pauser.paused():
        assert not gc.isenabled()
        assert pauser.pausing
    assert gc.isenabled()
    assert not pauser.pausing
    assert pauser.pauses == 1


def test_nested_blocks_share_one_pause_that_ends_with_the_last() -> None:
    pauser = Collector()
    outer = pauser.paused()
    outer.__enter__()
    with pauser.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the outer block still runs
    outer.__exit__(None, None, None)
    assert gc.isenabled()
    assert pauser.pauses == 1


def test_overlapping_blocks_in_two_threads_share_one_pause() -> None:
    pauser = Collector()
    inside, leave = threading.Event(), threading.Event()

    def other() -> None:
        with pauser.paused():
            inside.set()
            leave.wait(5)

    thread = threading.Thread(target=other)
    with pauser.paused():
        thread.start()
        assert inside.wait(5)
    assert not gc.isenabled()  # the other thread's block still runs
    leave.set()
    thread.join(5)
    assert gc.isenabled()
    assert pauser.pauses == 1


def test_an_exception_in_the_block_releases_the_pause() -> None:
    pauser = Collector()
    with pytest.raises(ZeroDivisionError), pauser.paused():
        1 / 0  # noqa: B018
    assert gc.isenabled()
    assert not pauser.pausing


def test_a_collector_the_application_disabled_stays_disabled() -> None:
    pauser = Collector(limit=0.05)
    gc.disable()
    with pauser.paused():
        assert not gc.isenabled()
        time.sleep(0.2)  # past the limit: the watchdog must not enable it either
    assert not gc.isenabled()
    assert pauser.pauses == 0
    assert pauser.expired == 0


def test_the_limit_enables_the_collector_while_the_block_still_runs() -> None:
    pauser = Collector(limit=0.05)
    began = time.monotonic()
    with pauser.paused():
        until(gc.isenabled)
        waited = time.monotonic() - began
        assert pauser.expired == 1
        # A block that starts meanwhile does not pause again: the pause expired
        # and ends only when every block of it has ended.
        with pauser.paused():
            assert gc.isenabled()
    assert waited >= 0.05
    assert gc.isenabled()
    assert pauser.pauses == 1
    # The next pause is a pause again, with a limit of its own.
    with pauser.paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    assert pauser.pauses == 2


def test_a_pause_that_ends_in_time_is_not_ended_by_its_limit() -> None:
    pauser = Collector(limit=0.5)
    with pauser.paused():
        time.sleep(0.3)
    with pauser.paused():
        # The first pause's deadline passes during this one, which has its own.
        time.sleep(0.3)
        assert not gc.isenabled()
    assert pauser.expired == 0
    assert pauser.pauses == 2
