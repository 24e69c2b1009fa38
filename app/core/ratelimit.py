"""Rate limits and password-login throttling, shared through Redis or kept in memory.

Two users of one store: :class:`RateLimiter`, a sliding-window limit for endpoints
such as the OAuth token and MFA endpoints, and :class:`LoginThrottle`, the
brute-force defence for password login.

Login throttling numbers (the README quotes this table):

===========================  ==========================================================
What is counted              What happens
===========================  ==========================================================
per account + address        5 failures are free; from the 6th attempt on, each attempt
                             waits 1 s, 2 s, 4 s, 8 s ... after the previous failure,
                             doubling up to 15 min; the count is forgotten 15 min after
                             the last failure and reset by a successful login
per address, any account     100 failures within 1 hour: the address is refused for
                             15 min (credential stuffing)
per account, any address     30 failures within 1 hour: the account is locked for
                             15 min; an address with no failure for that account in the
                             hour before the lock still gets one attempt every 5 min,
                             so an attacker cannot keep the real person out; a
                             successful login ends the lock
===========================  ==========================================================

No lock lasts longer than 15 minutes: a lock starts at the failure that crossed its
threshold, later failures do not extend it, and it ends by itself (a failure after
it has ended may start the next one while the window still holds enough failures).
IPv6 addresses are counted per /64, the block one machine usually holds.

Privacy: keys are HMAC-SHA256 digests (keyed by the application secret) of the
account and the address, never the email or the IP themselves; values are only
timestamps. Unknown emails are counted exactly like known ones, so throttling does
not reveal which emails have an account.

Time: the logic runs on an injectable wall clock (``now``) and stores timestamps;
expiry in the store (Redis TTLs, or the memory store's own monotonic clock) only
collects garbage, a little after the logic has stopped looking at a value. Every key
has an expiry, so nothing grows without bound.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.settings import Settings

KEY_PREFIX = "advocase:rl:"
DIGEST_HEX_CHARS = 32  # 128 bits of HMAC-SHA256
GC_MARGIN_SECONDS = 60  # store expiry runs this long after the logic forgets a value

# Per account + address pair.
PAIR_FREE_FAILURES = 5
PAIR_FIRST_DELAY_SECONDS = 1.0
PAIR_MAX_DELAY_SECONDS = 15 * 60
PAIR_FORGET_AFTER_SECONDS = 15 * 60
# Per address, whatever the account (credential stuffing).
ADDRESS_FAILURE_LIMIT = 100
ADDRESS_WINDOW_SECONDS = 60 * 60
ADDRESS_BLOCK_SECONDS = 15 * 60
# Per account, whatever the address.
ACCOUNT_FAILURE_LIMIT = 30
ACCOUNT_WINDOW_SECONDS = 60 * 60
ACCOUNT_LOCK_SECONDS = 15 * 60
LOCKED_ACCOUNT_FRESH_ADDRESS_INTERVAL_SECONDS = 5 * 60

IPV6_PREFIX_LENGTH = 64

# The pair log keeps enough failures to reach the capped delay.
PAIR_LOG_CAP = PAIR_FREE_FAILURES + 1 + math.ceil(
    math.log2(PAIR_MAX_DELAY_SECONDS / PAIR_FIRST_DELAY_SECONDS)
)

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")


class StoreUnavailable(RuntimeError):
    """The shared store (Redis) could not be reached; the message names no key."""


def _check_name(name: str, what: str) -> str:
    # Names appear in keys in clear: refuse anything that could be an email or an IP.
    if not _NAME.fullmatch(name):
        raise ValueError(f"{what} must match {_NAME.pattern}")
    return name


class RateLimitStore(ABC):
    """Timestamps under keyed digests; every operation is atomic and sets an expiry.

    ``key()`` turns identifying parts into an opaque key, so no caller needs to hash
    (or can forget to).
    """

    def __init__(self, secret: str | bytes, *, prefix: str = "") -> None:
        if not secret:
            raise ValueError("a rate-limit store needs a secret for its key derivation")
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self.prefix = prefix

    def key(self, kind: str, *parts: str) -> str:
        """``advocase:rl:<prefix><kind>:<hmac>``: the kind in clear, the parts only hashed."""
        _check_name(kind, "kind")
        message = "\x00".join((kind, *parts)).encode("utf-8", "surrogatepass")
        digest = hmac.new(self._secret, message, hashlib.sha256).hexdigest()
        return f"{KEY_PREFIX}{self.prefix}{kind}:{digest[:DIGEST_HEX_CHARS]}"

    @abstractmethod
    def hit(self, key: str, now: float, window: float, limit: int, ttl: int) -> float | None:
        """Record an event at ``now`` unless ``limit`` events lie in the window.

        Returns None when recorded, else the seconds until the oldest event leaves
        the window.
        """

    @abstractmethod
    def append(self, key: str, timestamp: float, cap: int, ttl: int) -> list[float]:
        """Add a timestamp, keep the newest ``cap``; returns them, oldest first."""

    @abstractmethod
    def timestamps(self, key: str) -> list[float]:
        """The stored timestamps, oldest first (empty when none)."""

    @abstractmethod
    def get(self, key: str) -> float | None:
        """A single stored number, or None."""

    @abstractmethod
    def start_unless_active(self, key: str, value: float, active_after: float, ttl: int) -> float:
        """Store ``value`` unless the stored number is greater than ``active_after``.

        Returns the number stored afterwards: how a lock starts once and is never
        extended while it is running.
        """

    @abstractmethod
    def delete(self, *keys: str) -> None:
        """Forget keys."""


@dataclass
class _Entry:
    expires_at: float
    value: Any


class MemoryStore(RateLimitStore):
    """One process's store: right for the embedded set-up with a single web process.

    ``clock`` (monotonic) only drives expiry; tests inject a fake one.
    """

    SWEEP_EVERY = 1024  # writes between two full sweeps of expired keys

    def __init__(
        self,
        secret: str | bytes,
        *,
        prefix: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(secret, prefix=prefix)
        self._clock = clock
        self._data: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._writes = 0

    def __len__(self) -> int:
        with self._lock:
            self._sweep()
            return len(self._data)

    def keys(self) -> list[str]:
        with self._lock:
            self._sweep()
            return list(self._data)

    def _sweep(self) -> None:
        now = self._clock()
        for key in [k for k, entry in self._data.items() if entry.expires_at <= now]:
            del self._data[key]

    def _live(self, key: str) -> Any:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            del self._data[key]
            return None
        return entry.value

    def _store(self, key: str, value: Any, ttl: int) -> None:
        self._data[key] = _Entry(self._clock() + ttl, value)
        self._writes += 1
        if self._writes % self.SWEEP_EVERY == 0:
            self._sweep()

    def hit(self, key: str, now: float, window: float, limit: int, ttl: int) -> float | None:
        with self._lock:
            events = [t for t in (self._live(key) or []) if t > now - window]
            if len(events) >= limit:
                self._store(key, events, ttl)
                return min(events) + window - now
            events.append(now)
            self._store(key, events, ttl)
            return None

    def append(self, key: str, timestamp: float, cap: int, ttl: int) -> list[float]:
        with self._lock:
            events = sorted([*(self._live(key) or []), timestamp])[-cap:]
            self._store(key, events, ttl)
            return list(events)

    def timestamps(self, key: str) -> list[float]:
        with self._lock:
            return list(self._live(key) or [])

    def get(self, key: str) -> float | None:
        with self._lock:
            value = self._live(key)
            return float(value) if value is not None else None

    def start_unless_active(self, key: str, value: float, active_after: float, ttl: int) -> float:
        with self._lock:
            current = self._live(key)
            if current is not None and current > active_after:
                return float(current)
            self._store(key, value, ttl)
            return value

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)


_HIT_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return false
"""

_START_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) > tonumber(ARGV[2]) then
  return current
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return ARGV[1]
"""


def _number(value: float) -> str:
    return repr(float(value))


class RedisStore(RateLimitStore):
    """The store shared by every web process; timestamps live in sorted sets.

    Redis errors become :class:`StoreUnavailable`, so callers need not import redis
    and no error text carries a key.
    """

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        *,
        prefix: str = "",
        timeout: float = 2.0,
    ) -> None:
        import redis

        super().__init__(secret, prefix=prefix)
        self._redis_error = redis.RedisError
        self.client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, health_check_interval=30
        )
        self._hit = self.client.register_script(_HIT_SCRIPT)
        self._start = self.client.register_script(_START_SCRIPT)

    def close(self) -> None:
        self.client.close()

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(f"rate-limit store unavailable ({type(exc).__name__})")

    @staticmethod
    def _member(timestamp: float) -> str:
        # Unique members: two events may carry the same timestamp.
        return f"{timestamp!r}:{secrets.token_hex(6)}"

    def hit(self, key: str, now: float, window: float, limit: int, ttl: int) -> float | None:
        args = [_number(now - window), _number(now), limit, ttl, self._member(now)]
        try:
            oldest = self._hit(keys=[key], args=args)
        except self._redis_error as exc:
            raise self._unavailable(exc) from None
        if oldest is None:
            return None
        return float(oldest) + window - now

    def append(self, key: str, timestamp: float, cap: int, ttl: int) -> list[float]:
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {self._member(timestamp): timestamp})
                pipe.zremrangebyrank(key, 0, -(cap + 1))
                pipe.expire(key, ttl)
                pipe.zrange(key, 0, -1, withscores=True)
                results = pipe.execute()
        except self._redis_error as exc:
            raise self._unavailable(exc) from None
        return [float(score) for _member, score in results[-1]]

    def timestamps(self, key: str) -> list[float]:
        try:
            pairs = self.client.zrange(key, 0, -1, withscores=True)
        except self._redis_error as exc:
            raise self._unavailable(exc) from None
        return [float(score) for _member, score in pairs]

    def get(self, key: str) -> float | None:
        try:
            value = self.client.get(key)
        except self._redis_error as exc:
            raise self._unavailable(exc) from None
        return float(value) if value is not None else None

    def start_unless_active(self, key: str, value: float, active_after: float, ttl: int) -> float:
        try:
            stored = self._start(keys=[key], args=[_number(value), _number(active_after), ttl])
        except self._redis_error as exc:
            raise self._unavailable(exc) from None
        return float(stored)

    def delete(self, *keys: str) -> None:
        if not keys:
            return
        try:
            self.client.delete(*keys)
        except self._redis_error as exc:
            raise self._unavailable(exc) from None


_stores: dict[tuple[str | None, str], RateLimitStore] = {}
_stores_lock = threading.Lock()
_namespace = ""


def get_store(settings: Settings) -> RateLimitStore:
    """The process-wide store for the configured URL: Redis if any, else memory.

    Memory is only right for a single web process (the embedded set-up); with
    several, limits must be shared, which is why a Redis broker is used by default.
    """
    url = settings.rate_limit_storage_url
    secret = settings.secret_key_value()
    identity = (url, hashlib.sha256(secret.encode()).hexdigest())
    with _stores_lock:
        store = _stores.get(identity)
        if store is None:
            store = (RedisStore(url, secret, prefix=_namespace) if url
                     else MemoryStore(secret, prefix=_namespace))
            _stores[identity] = store
        return store


def reset_stores(namespace: str | None = None) -> None:
    """Forget the process-wide stores (tests, or after the settings changed).

    ``namespace`` starts a fresh key space in a shared Redis (each test takes its
    own, so counts never leak from one test into another)."""
    global _namespace
    with _stores_lock:
        if namespace is not None:
            _namespace = namespace
        for store in _stores.values():
            if isinstance(store, RedisStore):
                store.close()
        _stores.clear()


def _ttl(seconds: float) -> int:
    return math.ceil(seconds) + GC_MARGIN_SECONDS


class RateLimiter:
    """Sliding-window limit: at most ``limit`` hits in any ``window_seconds``."""

    def __init__(self, store: RateLimitStore, *, now: Callable[[], float] = time.time) -> None:
        self.store = store
        self._now = now

    def hit(self, bucket: str, key: str, limit: int, window_seconds: float) -> float | None:
        """Count one request; None if allowed, else seconds to wait (for Retry-After).

        ``bucket`` names the endpoint and appears in the store key in clear, so it
        must be a fixed short name; ``key`` (a client id, an account, an address) is
        only ever hashed. A refused hit is not counted, so a client that waits as told
        gets through. Round the wait up for a Retry-After header.
        """
        if limit < 1 or window_seconds <= 0:
            raise ValueError("limit must be at least 1 and the window positive")
        store_key = self.store.key(_check_name(bucket, "bucket"), key)
        wait = self.store.hit(
            store_key, self._now(), window_seconds, limit, _ttl(window_seconds)
        )
        if wait is None:
            return None
        # Clocks of several processes may differ slightly: keep the answer sensible.
        return min(max(wait, 0.001), window_seconds)


def normalise_account(email: str) -> str:
    """The account identifier throttling counts: the email, stripped and lowercased."""
    return email.strip().lower()


def normalise_address(address: str) -> str:
    """The client address as counted: IPv6 per /64, IPv4 (also IPv4-mapped) as is."""
    text = address.strip()
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/{IPV6_PREFIX_LENGTH}", strict=False))
    return str(ip)


def _consecutive_failures(failures: list[float], now: float) -> int:
    """Failures still counted: the run back from the newest with no 15-minute gap."""
    count = 0
    later = now
    for moment in reversed(failures):
        if later - moment > PAIR_FORGET_AFTER_SECONDS:
            break
        count += 1
        later = moment
    return count


def pair_delay(failures: int) -> float:
    """The wait after ``failures`` counted failures of one account + address pair."""
    if failures < PAIR_FREE_FAILURES:
        return 0.0
    exponent = failures - PAIR_FREE_FAILURES
    if exponent >= 63:
        return float(PAIR_MAX_DELAY_SECONDS)
    return min(PAIR_FIRST_DELAY_SECONDS * 2**exponent, float(PAIR_MAX_DELAY_SECONDS))


class LoginThrottle:
    """Brute-force defence for password login (numbers in the module docstring).

    Call :meth:`check` before verifying a password and refuse with its wait when it
    returns a number; then call :meth:`record_failure` or :meth:`record_success`.
    Call them for unknown emails too, exactly as for known ones.

    ``check`` only reads: requests sent in parallel that all pass it before any of
    their failures is recorded are each verified. The counts catch up as soon as the
    failures are recorded, so a burst gains at most one round of parallel guesses.
    """

    def __init__(self, store: RateLimitStore, *, now: Callable[[], float] = time.time) -> None:
        self.store = store
        self._now = now

    def _keys(self, account: str, address: str) -> tuple[str, str, str, str, str]:
        account = normalise_account(account)
        address = normalise_address(address)
        key = self.store.key
        return (
            key("login-pair", account, address),
            key("login-address", address),
            key("login-address-block", address),
            key("login-account", account),
            key("login-account-lock", account),
        )

    def check(self, account: str, address: str) -> float | None:
        """None if this address may try a password for this account now, else seconds to wait.

        Reads only: nothing is counted until a failure or success is recorded.
        """
        now = self._now()
        pair_key, _address_key, block_key, _account_key, lock_key = self._keys(account, address)
        waits: list[float] = []

        blocked_at = self.store.get(block_key)
        if blocked_at is not None and now < blocked_at + ADDRESS_BLOCK_SECONDS:
            waits.append(blocked_at + ADDRESS_BLOCK_SECONDS - now)

        failures = self.store.timestamps(pair_key)
        counted = _consecutive_failures(failures, now)
        if counted:
            ready_at = failures[-1] + pair_delay(counted)
            if now < ready_at:
                waits.append(ready_at - now)

        locked_at = self.store.get(lock_key)
        if locked_at is not None and now < locked_at + ACCOUNT_LOCK_SECONDS:
            lock_ends = locked_at + ACCOUNT_LOCK_SECONDS
            window_start = locked_at - ACCOUNT_WINDOW_SECONDS
            if any(window_start <= moment <= locked_at for moment in failures):
                waits.append(lock_ends - now)
            else:
                # A fresh address during the lock: one attempt every 5 minutes.
                during_lock = [moment for moment in failures if moment > locked_at]
                if during_lock:
                    ready_at = during_lock[-1] + LOCKED_ACCOUNT_FRESH_ADDRESS_INTERVAL_SECONDS
                    if now < ready_at:
                        waits.append(min(ready_at, lock_ends) - now)

        return max(waits) if waits else None

    def record_failure(self, account: str, address: str) -> None:
        """Count a wrong password (or an unknown email) for the pair, address and account."""
        now = self._now()
        pair_key, address_key, block_key, account_key, lock_key = self._keys(account, address)
        # The pair's failures are kept for the whole account window before a lock
        # and the lock itself: they decide whether an address is fresh.
        self.store.append(
            pair_key,
            now,
            PAIR_LOG_CAP,
            _ttl(ACCOUNT_WINDOW_SECONDS + ACCOUNT_LOCK_SECONDS),
        )
        self._count(
            address_key, block_key, now,
            ADDRESS_FAILURE_LIMIT, ADDRESS_WINDOW_SECONDS, ADDRESS_BLOCK_SECONDS,
        )
        self._count(
            account_key, lock_key, now,
            ACCOUNT_FAILURE_LIMIT, ACCOUNT_WINDOW_SECONDS, ACCOUNT_LOCK_SECONDS,
        )

    def _count(
        self, log_key: str, lock_key: str, now: float, limit: int, window: float, duration: float
    ) -> None:
        failures = self.store.append(log_key, now, limit, _ttl(window))
        if sum(1 for moment in failures if moment > now - window) >= limit:
            self.store.start_unless_active(lock_key, now, now - duration, _ttl(duration))

    def record_success(self, account: str, address: str) -> None:
        """A correct password: forget the pair's failures and end the account's lock.

        The address and account failure counts stay: one success by the real person
        must not hand an attacker elsewhere a fresh budget.
        """
        pair_key, _address_key, _block_key, _account_key, lock_key = self._keys(account, address)
        self.store.delete(pair_key, lock_key)
