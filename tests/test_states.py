"""The supervision state machine and restart policy, with a fake clock (STYLE.md 7)."""

from __future__ import annotations

import pytest

from wactl.daemon.states import (
    ADOPTED,
    EDGES,
    IllegalTransition,
    RestartPolicy,
    State,
    WorkerMachine,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _machine(clock: Clock, **policy: float) -> WorkerMachine:
    return WorkerMachine(RestartPolicy(**policy), clock=clock)  # type: ignore[arg-type]


def test_every_edge_has_a_reason_and_others_are_refused() -> None:
    assert all(reason for reason in EDGES.values())
    clock = Clock()
    for source in State:
        for target in State:
            machine = _machine(clock)
            machine.state = source
            if (source, target) in EDGES:
                machine.transition(target)
                assert machine.state is target
            else:
                with pytest.raises(IllegalTransition):
                    machine.transition(target)


def test_backoff_is_immediate_then_doubles_with_jitter_and_caps() -> None:
    policy = RestartPolicy(backoff_initial=1.0, backoff_max=8.0, backoff_jitter=0.2)
    assert policy.delay(1) == 0.0
    assert policy.delay(2, rng=lambda: 0.5) == pytest.approx(1.0)
    assert policy.delay(3, rng=lambda: 0.5) == pytest.approx(2.0)
    assert policy.delay(4, rng=lambda: 0.0) == pytest.approx(4.0 * 0.8)
    assert policy.delay(4, rng=lambda: 1.0) == pytest.approx(4.0 * 1.2)
    assert policy.delay(10, rng=lambda: 1.0) == 8.0  # capped, jitter included


def test_crash_schedules_a_restart_and_quarantines_after_the_budget() -> None:
    clock = Clock()
    machine = _machine(clock, max_crashes=3, crash_window=60.0, backoff_jitter=0.0)
    machine.started()
    machine.up()
    assert machine.crashed("boom") is State.BACKOFF
    assert machine.restart_at == clock.now  # the first restart is immediate
    assert machine.due()
    machine.transition(State.STARTING)
    clock.now += 1
    assert machine.crashed("boom again") is State.BACKOFF
    assert machine.restart_at == clock.now + 1.0
    assert not machine.due()
    clock.now += 1
    assert machine.due()
    machine.transition(State.STARTING)
    assert machine.crashed("third") is State.FATAL
    assert machine.reason == "3 crashes within 60 s; last: third"
    # Only an operator start leaves FATAL, and it forgives the history.
    machine.operator_start()
    assert machine.state is State.STARTING and not machine.crashes and machine.consecutive == 0


def test_crashes_outside_the_window_do_not_count() -> None:
    clock = Clock()
    machine = _machine(clock, max_crashes=2, crash_window=10.0, stable_after=1e9)
    machine.started()
    assert machine.crashed("a") is State.BACKOFF
    machine.transition(State.STARTING)
    clock.now += 11
    assert machine.crashed("b") is State.BACKOFF  # the first crash left the window


def test_a_stable_run_forgives_earlier_crashes() -> None:
    clock = Clock()
    machine = _machine(clock, max_crashes=2, stable_after=30.0, backoff_jitter=0.0)
    machine.started()
    machine.up()
    assert machine.crashed("a") is State.BACKOFF
    machine.transition(State.STARTING)
    machine.up()
    clock.now += 31  # up long enough
    assert machine.crashed("b") is State.BACKOFF
    assert machine.consecutive == 1 and machine.restart_at == clock.now


def test_running_is_reached_only_through_starting() -> None:
    """RUNNING means the engine has started: no edge leads there but from STARTING, and
    a re-adopted worker (STARTING until its hello) keeps saying it was re-adopted."""
    assert [edge for edge in EDGES if edge[1] is State.RUNNING] == [(State.STARTING, State.RUNNING)]
    clock = Clock()
    adopted = _machine(clock)
    adopted.transition(State.STARTING, ADOPTED)
    adopted.up()
    assert (adopted.state, adopted.reason) == (State.RUNNING, ADOPTED)
    restarted = _machine(clock)
    restarted.started()
    restarted.crashed("exited with code 1")
    restarted.transition(State.STARTING, restarted.reason)
    restarted.up()
    assert (restarted.state, restarted.reason) == (State.RUNNING, None)
