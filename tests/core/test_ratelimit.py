"""Rate limits and login throttling, on the memory store and on Redis.

A fake clock drives both the logic and the memory store's expiry, so no test sleeps;
Redis TTLs only collect garbage and never decide anything here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from app.core import ratelimit
from app.core.ratelimit import (
    ACCOUNT_LOCK_SECONDS,
    ADDRESS_BLOCK_SECONDS,
    KEY_PREFIX,
    LoginThrottle,
    MemoryStore,
    RateLimiter,
    RateLimitStore,
    RedisStore,
    StoreUnavailable,
    get_store,
)
from app.settings import Settings
from tests.support import services

SECRET = "test-secret-for-key-derivation"
EMAIL = "maria.lopez@example.org"
ADDRESS = "203.0.113.7"


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.value = start

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[RateLimitStore]:
    if request.param == "memory":
        yield MemoryStore(SECRET, clock=clock)
        return
    services.require_redis()
    prefix = f"test-{uuid.uuid4().hex}:"
    redis_store = RedisStore(services.REDIS_URL, SECRET, prefix=prefix)
    try:
        yield redis_store
    finally:
        keys = list(redis_store.client.scan_iter(match=f"{KEY_PREFIX}{prefix}*"))
        if keys:
            redis_store.client.delete(*keys)
        redis_store.close()


@pytest.fixture
def throttle(store: RateLimitStore, clock: FakeClock) -> LoginThrottle:
    return LoginThrottle(store, now=clock)


def stored_keys(store: RateLimitStore) -> list[str]:
    if isinstance(store, MemoryStore):
        return store.keys()
    assert isinstance(store, RedisStore)
    return [
        key.decode()
        for key in store.client.scan_iter(match=f"{KEY_PREFIX}{store.prefix}*")
    ]


# Pair: free failures, then a progressive delay


def test_free_failures_then_doubling_delay_capped_at_15_minutes(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    for _ in range(5):
        assert throttle.check(EMAIL, ADDRESS) is None
        throttle.record_failure(EMAIL, ADDRESS)
    waits = []
    for _ in range(12):
        wait = throttle.check(EMAIL, ADDRESS)
        assert wait is not None
        waits.append(wait)
        clock.advance(wait - 0.5)
        assert throttle.check(EMAIL, ADDRESS) == pytest.approx(0.5)
        clock.advance(0.5)
        assert throttle.check(EMAIL, ADDRESS) is None
        throttle.record_failure(EMAIL, ADDRESS)
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]


def test_success_resets_the_pair(throttle: LoginThrottle, clock: FakeClock) -> None:
    for _ in range(7):
        throttle.record_failure(EMAIL, ADDRESS)
    assert throttle.check(EMAIL, ADDRESS) == 4
    throttle.record_success(EMAIL, ADDRESS)
    assert throttle.check(EMAIL, ADDRESS) is None
    for _ in range(5):
        throttle.record_failure(EMAIL, ADDRESS)
    assert throttle.check(EMAIL, ADDRESS) == 1


def test_pair_is_forgotten_15_minutes_after_the_last_failure(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    for _ in range(6):
        throttle.record_failure(EMAIL, ADDRESS)
    assert throttle.check(EMAIL, ADDRESS) == 2
    clock.advance(15 * 60 + 1)
    assert throttle.check(EMAIL, ADDRESS) is None
    for _ in range(4):
        throttle.record_failure(EMAIL, ADDRESS)
    assert throttle.check(EMAIL, ADDRESS) is None, "the old failures no longer count"


def test_pairs_are_independent_and_accounts_normalised(throttle: LoginThrottle) -> None:
    for _ in range(5):
        throttle.record_failure(" Maria.Lopez@Example.ORG ", ADDRESS)
    assert throttle.check(EMAIL, ADDRESS) == 1
    assert throttle.check(EMAIL, "198.51.100.1") is None
    assert throttle.check("someone.else@example.org", ADDRESS) is None


def test_ipv6_addresses_count_per_64(throttle: LoginThrottle) -> None:
    for host in range(1, 6):
        throttle.record_failure(EMAIL, f"2001:db8:1:2::{host:x}")
    assert throttle.check(EMAIL, "2001:db8:1:2:ffff:ffff:ffff:ffff") == 1
    assert throttle.check(EMAIL, "2001:db8:1:3::1") is None
    assert ratelimit.normalise_address("::ffff:198.51.100.9") == "198.51.100.9"


# Address: credential stuffing


def test_address_refused_for_15_minutes_after_100_failures(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    for n in range(99):
        throttle.record_failure(f"person{n}@example.org", ADDRESS)
        clock.advance(1)
    assert throttle.check("new.person@example.org", ADDRESS) is None
    throttle.record_failure("person99@example.org", ADDRESS)
    assert throttle.check("new.person@example.org", ADDRESS) == ADDRESS_BLOCK_SECONDS
    assert throttle.check(EMAIL, "198.51.100.1") is None, "other addresses are not refused"
    clock.advance(ADDRESS_BLOCK_SECONDS - 10)
    assert throttle.check("new.person@example.org", ADDRESS) == 10
    clock.advance(10)
    assert throttle.check("new.person@example.org", ADDRESS) is None
    # Still 100 failures within the hour: the next failure refuses it again, for 15 min.
    throttle.record_failure("new.person@example.org", ADDRESS)
    assert throttle.check(EMAIL, ADDRESS) == ADDRESS_BLOCK_SECONDS
    # An hour after the failures, they are all gone.
    clock.advance(60 * 60 + 1)
    throttle.record_failure(EMAIL, ADDRESS)
    assert throttle.check(EMAIL, ADDRESS) is None


# Account: lock, with one attempt every 5 minutes for fresh addresses


def lock_account(throttle: LoginThrottle, clock: FakeClock) -> list[str]:
    attackers = [f"198.51.100.{n}" for n in range(1, 31)]
    for attacker in attackers[:-1]:
        throttle.record_failure(EMAIL, attacker)
        clock.advance(10)
    assert throttle.check(EMAIL, attackers[0]) is None
    throttle.record_failure(EMAIL, attackers[-1])
    return attackers


def test_account_locked_after_30_failures_from_many_addresses(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    attackers = lock_account(throttle, clock)
    fresh = "192.0.2.44"
    assert throttle.check(EMAIL, attackers[0]) == ACCOUNT_LOCK_SECONDS
    assert throttle.check(EMAIL, attackers[-1]) == ACCOUNT_LOCK_SECONDS
    assert throttle.check("someone.else@example.org", attackers[0]) is None
    clock.advance(1)

    # A fresh address gets one attempt now, then one every 5 minutes.
    assert throttle.check(EMAIL, fresh) is None
    throttle.record_failure(EMAIL, fresh)
    assert throttle.check(EMAIL, fresh) == 300
    assert throttle.check(EMAIL, "192.0.2.45") is None, "each fresh address has its own turn"
    clock.advance(300)
    assert throttle.check(EMAIL, fresh) is None
    assert throttle.check(EMAIL, attackers[0]) == ACCOUNT_LOCK_SECONDS - 301
    throttle.record_failure(EMAIL, fresh)
    assert throttle.check(EMAIL, fresh) == 300

    # Failures during the lock do not extend it: it ends 15 minutes after it started.
    clock.advance(ACCOUNT_LOCK_SECONDS - 301)
    assert throttle.check(EMAIL, attackers[0]) is None
    assert throttle.check(EMAIL, fresh) is None


def test_last_turn_of_a_fresh_address_is_capped_by_the_lock_end(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    lock_account(throttle, clock)
    clock.advance(ACCOUNT_LOCK_SECONDS - 100)
    throttle.record_failure(EMAIL, "192.0.2.44")
    assert throttle.check(EMAIL, "192.0.2.44") == 100


def test_success_ends_the_lock(throttle: LoginThrottle, clock: FakeClock) -> None:
    attackers = lock_account(throttle, clock)
    throttle.record_success(EMAIL, "192.0.2.44")
    assert throttle.check(EMAIL, attackers[0]) is None
    # The account's failures still lie within the hour: the next failure locks again.
    throttle.record_failure(EMAIL, attackers[0])
    assert throttle.check(EMAIL, attackers[1]) == ACCOUNT_LOCK_SECONDS


def test_lock_and_counts_expire_after_their_windows(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    attackers = lock_account(throttle, clock)
    clock.advance(ACCOUNT_LOCK_SECONDS)
    assert throttle.check(EMAIL, attackers[0]) is None
    clock.advance(60 * 60)
    throttle.record_failure(EMAIL, attackers[0])
    assert throttle.check(EMAIL, attackers[1]) is None, "an hour later the count starts over"


def test_unknown_and_known_emails_are_throttled_alike(
    throttle: LoginThrottle, store: RateLimitStore
) -> None:
    for email in (EMAIL, "nobody.here@example.org"):
        for _ in range(6):
            throttle.record_failure(email, ADDRESS)
    assert throttle.check(EMAIL, ADDRESS) == throttle.check("nobody.here@example.org", ADDRESS)


# Storage


def test_keys_reveal_neither_email_nor_address(
    throttle: LoginThrottle, store: RateLimitStore, clock: FakeClock
) -> None:
    for _ in range(6):
        throttle.record_failure(EMAIL, ADDRESS)
    RateLimiter(store, now=clock).hit("oauth-token", EMAIL, 5, 60)
    keys = stored_keys(store)
    assert len(keys) >= 4
    for key in keys:
        assert key.startswith(KEY_PREFIX + store.prefix)
        lowered = key.lower()
        for clear in (EMAIL, "maria", "lopez", "example", ADDRESS, "203.0.113", "203_0_113"):
            assert clear not in lowered, key
    if isinstance(store, RedisStore):
        for key in keys:
            ttl = store.client.ttl(key)
            assert 0 < ttl <= 60 * 60 + 15 * 60 + 60, (key, ttl)
            if store.client.type(key) == b"zset":
                for member in store.client.zrange(key, 0, -1):
                    assert b"maria" not in member and b"203.0.113" not in member


def test_memory_store_forgets_expired_keys(clock: FakeClock) -> None:
    store = MemoryStore(SECRET, clock=clock)
    throttle = LoginThrottle(store, now=clock)
    throttle.record_failure(EMAIL, ADDRESS)
    RateLimiter(store, now=clock).hit("mfa", EMAIL, 3, 30)
    assert len(store) == 4
    clock.advance(30 + 60)
    assert len(store) == 3, "the limiter's key went after its window and margin"
    clock.advance(60 * 60 + 15 * 60)
    assert len(store) == 0


def test_key_names_refuse_personal_data() -> None:
    store = MemoryStore(SECRET)
    with pytest.raises(ValueError):
        RateLimiter(store).hit(EMAIL, "x", 1, 1)
    with pytest.raises(ValueError):
        RateLimiter(store).hit(ADDRESS, "x", 1, 1)
    with pytest.raises(ValueError):
        store.key("Bad Kind", "x")
    assert store.key("mfa", "a") != MemoryStore("another secret").key("mfa", "a")
    assert store.key("mfa", "a", "b") != store.key("mfa", "a\x00b", "")


def test_redis_outage_raises_store_unavailable_without_keys() -> None:
    store = RedisStore("redis://127.0.0.1:1/0", SECRET, timeout=0.5)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            LoginThrottle(store).check(EMAIL, ADDRESS)
        assert "advocase" not in str(caught.value) and "maria" not in str(caught.value)
    finally:
        store.close()


def test_get_store_is_process_wide() -> None:
    base = {"secret_key": SECRET, "broker_url": "sqla+sqlite:///:memory:"}
    try:
        memory = get_store(Settings(**base, rate_limit_url=None))
        assert isinstance(memory, MemoryStore)
        assert get_store(Settings(**base, rate_limit_url=None)) is memory
        shared = get_store(Settings(**base, rate_limit_url=services.REDIS_URL))
        assert isinstance(shared, RedisStore)
        assert get_store(Settings(**base, rate_limit_url=services.REDIS_URL)) is shared
    finally:
        ratelimit.reset_stores()


# Generic limiter


def test_limiter_allows_limit_hits_per_window(store: RateLimitStore, clock: FakeClock) -> None:
    limiter = RateLimiter(store, now=clock)
    for _ in range(3):
        assert limiter.hit("oauth-token", "client-1", 3, 60) is None
        clock.advance(10)
    wait = limiter.hit("oauth-token", "client-1", 3, 60)
    assert wait is not None and 0 < wait <= 60
    assert wait == pytest.approx(30)
    assert limiter.hit("oauth-token", "client-2", 3, 60) is None, "keys are independent"
    assert limiter.hit("mfa-verify", "client-1", 3, 60) is None, "buckets are independent"
    clock.advance(wait)
    assert limiter.hit("oauth-token", "client-1", 3, 60) is None, "the oldest hit left"
    assert limiter.hit("oauth-token", "client-1", 3, 60) == pytest.approx(10)


def test_limiter_refusals_are_not_counted(store: RateLimitStore, clock: FakeClock) -> None:
    limiter = RateLimiter(store, now=clock)
    assert limiter.hit("mfa", "account", 1, 30) is None
    for _ in range(5):
        assert limiter.hit("mfa", "account", 1, 30) == pytest.approx(30)
    clock.advance(30)
    assert limiter.hit("mfa", "account", 1, 30) is None
