"""EC2's request limits, kept on Lens's side in token buckets every worker shares.

EC2 throttles each AWS account per region with token buckets
(https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html):
RunInstances and StartInstances hold 5 request tokens refilled at 2 a second,
mutating actions refill at 5 a second (200 deep), and StopInstances /
TerminateInstances have a resource bucket of 1,000 instances refilled at 20
instances a second. A call past an empty bucket fails with
RequestLimitExceeded, so a class of 400 pressing Launch at 9:00 would mostly
fail. Lens keeps its own copy of those buckets in Redis and makes callers
queue for a token instead.

A bucket may go into debt: each taker is given the moment its tokens will
exist, in arrival order. A short wait is slept off; a long one raises
`RateLimited` and the slot is kept for the caller (`holder`), so the Celery
task that retries at `retry_after` uses it instead of queueing again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from django.conf import settings

KEY_PREFIX = "lens:ec2-bucket"


class RateLimited(Exception):  # noqa: N818 (a condition, not a failure)
    """Lens's own bucket says wait longer than a worker should sleep; try again later."""

    def __init__(self, *, bucket: str, retry_after: float):
        super().__init__(f"Waiting {retry_after:.1f} s for AWS's {bucket} rate limit.")
        self.bucket, self.retry_after = bucket, retry_after


@dataclass(frozen=True)
class BucketSpec:
    capacity: float
    per_second: float


def bucket_specs() -> dict[str, BucketSpec]:
    """The buckets Lens keeps, sized from settings (defaults: EC2's documented limits)."""
    return {
        "run": BucketSpec(settings.LENS_EC2_RUN_BURST, settings.LENS_EC2_RUN_PER_SECOND),
        "mutate": BucketSpec(settings.LENS_EC2_MUTATE_BURST, settings.LENS_EC2_MUTATE_PER_SECOND),
        "stop": BucketSpec(settings.LENS_EC2_STOP_BURST, settings.LENS_EC2_STOP_PER_SECOND),
        "terminate": BucketSpec(settings.LENS_EC2_STOP_BURST, settings.LENS_EC2_STOP_PER_SECOND),
    }


# KEYS: bucket hash, holder's reservation ("" for none). ARGV: capacity, per second,
# cost, longest sleep, now ("" = the Redis server's clock, shared by every host),
# seconds to keep an idle bucket. Returns the seconds to wait (as text: Redis would
# truncate a Lua number). Without a holder, a caller who will not wait takes nothing.
_TAKE = """
local capacity, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local cost, max_wait, keep = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[6])
local now = tonumber(ARGV[5])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local held = KEYS[2] ~= ''
local slot = held and tonumber(redis.call('GET', KEYS[2]))
if slot then
  if slot - now <= max_wait then redis.call('DEL', KEYS[2]) end
  return tostring(math.max(slot - now, 0))
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]) or capacity, tonumber(state[2]) or now
if now > at then
  tokens = math.min(capacity, tokens + (now - at) * rate)
  at = now
end
local wait = 0
if tokens - cost < 0 then wait = (cost - tokens) / rate end
if wait > max_wait and not held then return tostring(wait) end
tokens = tokens - cost
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('EXPIRE', KEYS[1], math.ceil(keep + wait))
if wait > max_wait then
  redis.call('SET', KEYS[2], tostring(now + wait), 'EX', math.ceil(wait + keep))
end
return tostring(wait)
"""

# KEYS: bucket hash. ARGV: capacity, per second, now. AWS throttled us anyway
# (another tool shares the account): whatever Lens thought was left is gone.
_DRAIN = """
local capacity, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]) or capacity, tonumber(state[2]) or now
if now > at then
  tokens = math.min(capacity, tokens + (now - at) * rate)
  at = now
end
redis.call('HSET', KEYS[1], 'tokens', tostring(math.min(tokens, 0)), 'at', tostring(at))
redis.call('EXPIRE', KEYS[1], 3600)
return tostring(math.min(tokens, 0))
"""


class TokenBuckets:
    """Named buckets per scope (an AWS account and region), stored in one Redis.

    `clock` and `sleep` are for tests: by default the Redis server's clock
    decides, so workers on hosts whose clocks disagree still share one bucket.
    """

    def __init__(self, *, client: redis.Redis, specs: dict[str, BucketSpec],
                 max_wait: float, clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], None] = time.sleep, enabled: bool = True):
        self.client, self.specs, self.max_wait = client, specs, max_wait
        self.clock, self.sleep, self.enabled = clock, sleep, enabled
        self._take = client.register_script(_TAKE)
        self._drain = client.register_script(_DRAIN)

    def _now(self) -> str:
        return "" if self.clock is None else repr(self.clock())

    def key(self, scope: str, name: str) -> str:
        return f"{KEY_PREFIX}:{scope}:{name}"

    def take(self, *, scope: str, name: str, cost: float = 1, holder: str = "") -> float:
        """Wait until `cost` tokens are ours; return the seconds waited.

        Raises RateLimited when that would be longer than `max_wait`; the slot
        stays reserved for `holder` (if given), who should come back then.
        """
        if not self.enabled or cost <= 0:
            return 0.0
        spec = self.specs[name]
        key = self.key(scope, name)
        reservation = f"{key}:held:{holder}" if holder else ""
        wait = float(self._take(keys=[key, reservation], args=[
            spec.capacity, spec.per_second, cost, self.max_wait, self._now(),
            int(spec.capacity / spec.per_second) + 60]))
        if wait > self.max_wait:
            raise RateLimited(bucket=name, retry_after=wait)
        if wait > 0:
            self.sleep(wait)
        return wait

    def drain(self, *, scope: str, name: str) -> None:
        """AWS said RequestLimitExceeded: empty the bucket so the next callers wait."""
        if not self.enabled:
            return
        spec = self.specs[name]
        self._drain(keys=[self.key(scope, name)],
                    args=[spec.capacity, spec.per_second, self._now()])

    def level(self, *, scope: str, name: str) -> float:
        """Tokens in the bucket when last touched (negative: owed to queued callers)."""
        value = self.client.hget(self.key(scope, name), "tokens")
        return self.specs[name].capacity if value is None else float(value)


_buckets: TokenBuckets | None = None
_buckets_lock = threading.Lock()


def buckets() -> TokenBuckets:
    """The process's buckets on the shared Redis, built on first use."""
    global _buckets
    with _buckets_lock:
        if _buckets is None:
            _buckets = TokenBuckets(client=redis.Redis.from_url(settings.REDIS_URL),
                                    specs=bucket_specs(),
                                    max_wait=settings.LENS_EC2_MAX_WAIT_SECONDS,
                                    enabled=settings.LENS_EC2_RATE_LIMITS)
        return _buckets


def buckets_reset() -> None:
    """Forget the process's buckets (tests that change the settings they are built from)."""
    global _buckets
    with _buckets_lock:
        _buckets = None


def buckets_clear() -> None:
    """Delete every bucket and reservation in Redis (tests start with full buckets)."""
    client = buckets().client
    for key in client.scan_iter(f"{KEY_PREFIX}:*", count=1000):
        client.delete(key)
