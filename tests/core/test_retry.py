"""Retry policy: wait-header parsing in every spelling, backoff bounds, caps, settings."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from intacct_api.retry import RetryPolicy, Wait, retry_after_from_headers
from intacct_api.settings import ConnectionSettings

NOW = 1_700_000_000.0

IA_HEADERS = [
    "X-IA-Throttle-Limit-RetryAfter",
    "X-IA-Hour-Rate-Limit-Retry-After",
    "X-IA-Minute-Rate-Limit-Retry-After",
    "X-IA-TENANT-Throttle-Limit-Retry-After",
    "x-ia-tenant-throttle-limit-retry-after",
    "X-IA-CPU-Limit-RetryAfter",
]


def test_retry_after_seconds() -> None:
    assert retry_after_from_headers({"Retry-After": "12"}, now=NOW) == Wait(12.0, "Retry-After")
    assert retry_after_from_headers({"retry-after": " 1.5 "}, now=NOW) == Wait(1.5, "retry-after")


def test_retry_after_http_date() -> None:
    date = email.utils.formatdate(NOW + 30, usegmt=True)
    wait = retry_after_from_headers({"Retry-After": date}, now=NOW)
    assert wait == Wait(30.0, "Retry-After")


def test_retry_after_date_in_the_past_is_zero() -> None:
    date = email.utils.formatdate(NOW - 30, usegmt=True)
    assert retry_after_from_headers({"Retry-After": date}, now=NOW) == Wait(0.0, "Retry-After")


@pytest.mark.parametrize("name", IA_HEADERS)
def test_every_ia_retry_header_spelling(name: str) -> None:
    assert retry_after_from_headers({name: "7"}, now=NOW) == Wait(7.0, name)


def test_httpx_headers_are_case_insensitive_too() -> None:
    headers = httpx.Headers({"x-ia-throttle-limit-retryafter": "4"})
    wait = retry_after_from_headers(headers, now=NOW)
    assert wait is not None
    assert wait.seconds == 4.0


def test_standard_retry_after_wins_over_ia_headers() -> None:
    headers = {"X-IA-Hour-Rate-Limit-Retry-After": "900", "Retry-After": "5"}
    assert retry_after_from_headers(headers, now=NOW) == Wait(5.0, "Retry-After")


def test_longest_ia_header_wins() -> None:
    headers = {
        "X-IA-Throttle-Limit-RetryAfter": "2",
        "X-IA-Hour-Rate-Limit-Retry-After": "90",
        "X-IA-TENANT-Throttle-Limit-Retry-After": "10",
    }
    assert retry_after_from_headers(headers, now=NOW) == Wait(
        90.0, "X-IA-Hour-Rate-Limit-Retry-After"
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-IA-Throttle-Limit": "100", "X-IA-Throttle-Limit-Remaining": "0"},
        {"Retry-After": "soon"},
        {"Retry-After": "nan"},
        {"X-IA-Throttle-Limit-RetryAfter": ""},
        {"X-Other-Retry-After": "3"},
    ],
)
def test_headers_without_a_usable_wait(headers: dict[str, str]) -> None:
    assert retry_after_from_headers(headers, now=NOW) is None


def test_unparseable_standard_header_falls_back_to_ia_header() -> None:
    headers = {"Retry-After": "soon", "X-IA-Throttle-Limit-RetryAfter": "3"}
    assert retry_after_from_headers(headers, now=NOW) == Wait(3.0, "X-IA-Throttle-Limit-RetryAfter")


def test_throttle_wait_is_capped_by_max_wait() -> None:
    policy = RetryPolicy(max_wait=60.0)
    wait = policy.wait_for_status(429, {"X-IA-Hour-Rate-Limit-Retry-After": "1800"}, 0)
    assert wait.seconds == 60.0
    assert "X-IA-Hour-Rate-Limit-Retry-After" in wait.reason
    assert "1800" in wait.reason


def test_throttle_without_header_backs_off() -> None:
    policy = RetryPolicy(base_delay=2.0, rand=lambda: 0.25)
    wait = policy.wait_for_status(503, {}, 2)
    assert wait.seconds == pytest.approx(0.25 * 2.0 * 4)
    assert wait.reason.startswith("backoff")


def test_server_errors_ignore_retry_headers() -> None:
    policy = RetryPolicy(rand=lambda: 1.0)
    assert policy.wait_for_status(500, {"Retry-After": "30"}, 0).seconds == 1.0


@pytest.mark.parametrize("retries_done", [0, 1, 5, 10, 100, 10_000])
def test_backoff_is_full_jitter_and_capped(retries_done: int) -> None:
    high = RetryPolicy(base_delay=1.0, max_backoff=60.0, rand=lambda: 0.999999)
    low = RetryPolicy(base_delay=1.0, max_backoff=60.0, rand=lambda: 0.0)
    ceiling = min(60.0, 2.0**retries_done) if retries_done < 64 else 60.0
    assert high.backoff(retries_done) == pytest.approx(ceiling * 0.999999)
    assert high.backoff(retries_done) <= 60.0
    assert low.backoff(retries_done) == 0.0


def test_retryable_statuses() -> None:
    retryable = {s for s in range(100, 600) if RetryPolicy.is_retryable_status(s)}
    assert retryable == {429, 500, 502, 503, 504}


def test_attempt_counting() -> None:
    policy = RetryPolicy(max_retries=2)
    assert policy.attempts == 3
    assert [policy.can_retry(n) for n in range(4)] == [True, True, False, False]
    assert not RetryPolicy(max_retries=0).can_retry(0)


def test_from_settings_and_injected_sleep() -> None:
    slept: list[float] = []
    settings = ConnectionSettings(max_retries=7, max_retry_wait=42.0)
    policy = RetryPolicy.from_settings(settings, sleep=slept.append)
    assert policy.max_retries == 7
    assert policy.max_wait == 42.0
    policy.pause(Wait(1.25, "test"))
    policy.pause(Wait(0.0, "test"))
    assert slept == [1.25]
