"""Fault injection, off by default: rate limiting, failing or slow requests, webhook mishaps.

Rules are deterministic ("the next 3 POST /v1/customers fail with 500") or probabilistic with a
seed ("10% of requests fail", reproducible run to run).
"""

from __future__ import annotations

import fnmatch
import itertools
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from app.sandbox.wire import StripeError

DEFAULT_RATE_LIMIT = 25.0
_rule_ids = itertools.count(1)


@dataclass
class FaultRule:
    id: str
    method: str | None = None  # None matches any method
    path: str | None = None  # fnmatch pattern such as /v1/customers or /v1/customers/*
    count: int | None = None  # fail this many matching requests, then retire; None = no limit
    probability: float | None = None  # fail this fraction of matching requests
    seed: int | None = None
    status: int = 500
    delay_ms: int = 0  # answer slowly (with status 200 when only a delay is wanted)
    error_type: str = "api_error"
    message: str = "Sorry, something went wrong on our end (sandbox fault injection)."
    matched: int = 0
    fired: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_rng", None)
        return data


@dataclass
class WebhookFaults:
    drop: float = 0.0  # fraction of deliveries never sent
    duplicate: float = 0.0  # fraction of deliveries sent twice
    delay_ms: int = 0  # extra wait before the first attempt
    reorder: bool = False  # deliver each due batch in shuffled order
    seed: int | None = None


class Faults:
    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self.rate_limit: float | None = None
        self._windows: dict[str, tuple[int, int]] = {}
        # What clients did, for tests of their request budgets: the most requests one account
        # made within one second, and how many were answered 429 by the rate limit.
        self.peak_per_second = 0
        self.rate_limited = 0
        self.webhooks = WebhookFaults()
        self.webhook_rng = random.Random()

    def reset(self) -> None:
        self.__init__()

    def add(self, spec: dict[str, Any]) -> FaultRule:
        allowed = {
            "method",
            "path",
            "count",
            "probability",
            "seed",
            "status",
            "delay_ms",
            "error_type",
            "message",
        }
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        rule = FaultRule(id=f"fault_{next(_rule_ids)}", **spec)
        if rule.method:
            rule.method = rule.method.upper()
        rule._rng = random.Random(rule.seed)
        if rule.status == 200 and not rule.delay_ms:
            raise ValueError("a rule with status 200 must set delay_ms")
        self.rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    def set_webhook_faults(self, spec: dict[str, Any]) -> WebhookFaults:
        self.webhooks = WebhookFaults(**spec)
        self.webhook_rng = random.Random(self.webhooks.seed)
        return self.webhooks

    def check(self, method: str, path: str, account: str) -> tuple[float, StripeError | None]:
        """(seconds to wait, error to answer with) for one API request."""
        second = int(time.monotonic())
        window, count = self._windows.get(account, (second, 0))
        count = count + 1 if window == second else 1
        self._windows[account] = (second, count)
        self.peak_per_second = max(self.peak_per_second, count)
        if self.rate_limit is not None and count > self.rate_limit:
            self.rate_limited += 1
            return 0.0, StripeError(
                429,
                "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
                code="rate_limit",
            )
        for rule in list(self.rules):
            if rule.method and rule.method != method:
                continue
            if rule.path and not fnmatch.fnmatchcase(path, rule.path):
                continue
            rule.matched += 1
            if rule.probability is not None and rule._rng.random() >= rule.probability:
                continue
            rule.fired += 1
            if rule.count is not None and rule.fired >= rule.count:
                self.rules.remove(rule)
            delay = rule.delay_ms / 1000
            if rule.status == 200:
                return delay, None
            error = StripeError(rule.status, rule.message, type=rule.error_type)
            if rule.status == 429:
                error.code = "rate_limit"
            return delay, error
        return 0.0, None
