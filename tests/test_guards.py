"""The login throttle's policy, on a clock the test moves (the HTTP behaviour is in
tests/test_security.py against a real studio)."""

from studio.guards import LoginThrottle


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle_after(failures: int) -> tuple[LoginThrottle, Clock]:
    clock = Clock()
    throttle = LoginThrottle(free_failures=5, base_delay_s=2.0, max_delay_s=60.0, clock=clock)
    for _ in range(failures):
        throttle.failed("10.0.0.1")
    return throttle, clock


def test_the_first_failures_cost_nothing():
    throttle, _ = throttle_after(4)
    assert throttle.wait_s("10.0.0.1") == 0.0


def test_after_the_free_failures_a_client_waits_and_may_try_again_later():
    throttle, clock = throttle_after(5)
    assert throttle.wait_s("10.0.0.1") == 2.0
    clock.now += 2.0
    assert throttle.wait_s("10.0.0.1") == 0.0


def test_each_further_failure_doubles_the_wait_up_to_the_cap():
    assert throttle_after(6)[0].wait_s("10.0.0.1") == 4.0
    assert throttle_after(7)[0].wait_s("10.0.0.1") == 8.0
    assert throttle_after(30)[0].wait_s("10.0.0.1") == 60.0


def test_other_clients_are_not_slowed_down():
    throttle, _ = throttle_after(10)
    assert throttle.wait_s("10.0.0.2") == 0.0


def test_a_successful_login_clears_the_record():
    throttle, _ = throttle_after(10)
    throttle.succeeded("10.0.0.1")
    assert throttle.wait_s("10.0.0.1") == 0.0


def test_old_failures_are_forgotten():
    throttle, clock = throttle_after(10)
    clock.now += throttle.forget_after_s + 1
    throttle.failed("10.0.0.2")  # any new failure sweeps the old records
    assert throttle.wait_s("10.0.0.1") == 0.0
