"""The circuit breaker's state machine, on a fake clock."""

from gateway.breaker import CircuitBreaker


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_opens_after_threshold_and_half_opens_after_cooldown():
    clock = Clock()
    b = CircuitBreaker(threshold=3, cooldown=10, clock=clock)
    for _ in range(2):
        b.record_failure()
    assert b.state == "closed" and b.allow()
    b.record_failure()
    assert b.state == "open" and not b.allow()
    assert b.retry_in() == 10
    clock.now += 10
    assert b.state == "half_open"
    assert b.allow() is True      # the one probe
    assert b.allow() is False     # everyone else waits for it
    b.record_success()
    assert b.state == "closed" and b.allow()


def test_failed_probe_reopens_for_a_full_cooldown():
    clock = Clock()
    b = CircuitBreaker(threshold=1, cooldown=5, clock=clock)
    b.record_failure()
    clock.now += 5
    assert b.allow()
    b.record_failure()
    assert b.state == "open" and b.retry_in() == 5


def test_success_resets_the_failure_count():
    b = CircuitBreaker(threshold=2, cooldown=5, clock=Clock())
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert b.state == "closed"


def test_release_frees_the_probe_without_judging():
    clock = Clock()
    b = CircuitBreaker(threshold=1, cooldown=1, clock=clock)
    b.record_failure()
    clock.now += 1
    assert b.allow() and not b.allow()
    b.release()
    assert b.allow()
