"""The worker state machine and restart policy: stdlib only, clock injected, no I/O.

States (DESIGN.md section 3)::

    STOPPED --start--> STARTING --started--> RUNNING --stop--> STOPPING --exited--> STOPPED
                          |                     |
                          | crashed             | crashed / hung / over memory
                          v                     v
                       BACKOFF --(delay)--> STARTING        BACKOFF --too many--> FATAL
    FATAL --start (operator)--> STARTING

Every change of state goes through `WorkerMachine.transition`, which refuses an edge
that is not in `EDGES`. The policy (how long to back off, when to quarantine) is in
`RestartPolicy`, whose knobs come from the ``[supervisor]`` config section.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

# The states are the values stored in worker_process.status (stdlib-only module too).
from wactl.enums import WorkerStatus as State

__all__ = ["ADOPTED", "EDGES", "IllegalTransition", "RestartPolicy", "State", "WorkerMachine"]

#: The allowed edges, each with why it exists.
EDGES: dict[tuple[State, State], str] = {
    (State.STOPPED, State.STARTING): (
        "operator start, boot restoring desired=RUNNING, or a live worker re-adopted "
        "after a daemon restart (RUNNING once its hello says its engine has started)"
    ),
    (State.FATAL, State.STARTING): "operator start lifts the quarantine",
    (State.FATAL, State.STOPPED): "operator stop acknowledges the quarantine",
    (State.STARTING, State.RUNNING): "the worker's engine has started (its `started` event)",
    (State.STARTING, State.BACKOFF): "the worker died before reporting that it is up",
    (State.STARTING, State.STOPPING): "operator stop while starting",
    (State.STARTING, State.FATAL): "died while starting, and the crash budget is spent",
    (State.RUNNING, State.BACKOFF): "crash, hung (no heartbeat) or over its memory ceiling",
    (State.RUNNING, State.FATAL): "crash, and the crash budget is spent",
    (State.RUNNING, State.STOPPING): "operator stop or graceful restart",
    (State.BACKOFF, State.STARTING): "the backoff delay is over",
    (State.BACKOFF, State.STOPPED): "operator stop during the delay (nothing to signal)",
    (State.STOPPING, State.STOPPED): "the process group is gone",
    (State.STOPPED, State.FATAL): "re-read a quarantined worker after a daemon restart",
}


#: The reason of a worker the daemon found running after its own restart.
ADOPTED = "re-adopted after a daemon restart"


class IllegalTransition(Exception):
    """An edge not in `EDGES` was asked for: a bug in the supervisor, never user input."""


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a crashed worker and when to give up on it."""

    #: Delay before the second restart in a row; doubles each time (the first is immediate).
    backoff_initial: float = 1.0
    #: Upper bound of the delay.
    backoff_max: float = 60.0
    #: Each delay is multiplied by a random factor in [1 - jitter, 1 + jitter].
    backoff_jitter: float = 0.2
    #: This many crashes within `crash_window` seconds put the worker in FATAL.
    max_crashes: int = 5
    crash_window: float = 300.0
    #: A worker that stayed RUNNING this long has its crash history forgiven.
    stable_after: float = 60.0

    def delay(self, consecutive: int, rng: Callable[[], float] = random.random) -> float:
        """Delay before restart number ``consecutive`` (1 = the first after a crash)."""
        if consecutive <= 1:
            return 0.0
        # 2.0 ** n is a float; int ** int is typed Any because n may be negative.
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** (consecutive - 2))
        factor = 1.0 - self.backoff_jitter + 2.0 * self.backoff_jitter * rng()
        return min(self.backoff_max, base * factor)


@dataclass
class WorkerMachine:
    """One worker's state, crash history and restart schedule."""

    policy: RestartPolicy
    clock: Callable[[], float]
    state: State = State.STOPPED
    since: float = 0.0
    crashes: deque[float] = field(default_factory=deque)
    consecutive: int = 0
    restart_at: float | None = None
    reason: str | None = None

    def transition(self, new: State, reason: str | None = None) -> None:
        if (self.state, new) not in EDGES:
            raise IllegalTransition(f"{self.state} -> {new}")
        self.state = new
        self.since = self.clock()
        self.reason = reason
        if new is not State.BACKOFF:
            self.restart_at = None

    def started(self) -> None:
        self.transition(State.STARTING)

    def up(self) -> None:
        """STARTING -> RUNNING; a re-adopted worker keeps saying so."""
        self.transition(State.RUNNING, self.reason if self.reason == ADOPTED else None)

    def crashed(self, reason: str) -> State:
        """Record a crash; move to BACKOFF (with a restart time) or FATAL. Returns the state."""
        now = self.clock()
        if self.state is State.RUNNING and now - self.since >= self.policy.stable_after:
            self.crashes.clear()
            self.consecutive = 0
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > self.policy.crash_window:
            self.crashes.popleft()
        self.consecutive += 1
        if len(self.crashes) >= self.policy.max_crashes:
            self.transition(
                State.FATAL,
                f"{len(self.crashes)} crashes within {self.policy.crash_window:g} s; "
                f"last: {reason}",
            )
            return self.state
        self.transition(State.BACKOFF, reason)
        self.restart_at = now + self.policy.delay(self.consecutive)
        return self.state

    def operator_start(self) -> None:
        """An operator start: clears the quarantine and the crash history."""
        self.crashes.clear()
        self.consecutive = 0
        self.transition(State.STARTING)

    def due(self) -> bool:
        """True when a BACKOFF worker's delay is over."""
        return (
            self.state is State.BACKOFF
            and self.restart_at is not None
            and self.clock() >= self.restart_at
        )
