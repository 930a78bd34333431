"""The retention policy of snapshot-prune: which snapshots a keep-last/hourly/.../yearly policy keeps.

Pure and driver-free: Proxmox Backup Server's rules over (name, time, protected, current) records.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, tzinfo

from ..errors import ErrorCode, ErrorDomain, error
from ..records import Frozen

# The rules in the order Proxmox Backup Server applies them; each maps a time to its period's key.
PeriodKey = Callable[[datetime], object]
RULES: tuple[tuple[str, PeriodKey | None], ...] = (
    ("keep_last", None),  # every snapshot is its own period
    ("keep_hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("keep_daily", lambda t: (t.year, t.month, t.day)),
    ("keep_weekly", lambda t: t.isocalendar()[:2]),  # ISO year and week: weeks start on Monday
    ("keep_monthly", lambda t: (t.year, t.month)),
    ("keep_yearly", lambda t: t.year),
)
RULE_NAMES: tuple[str, ...] = tuple(name for name, _ in RULES)
POLICY_KEYS: tuple[str, ...] = (*RULE_NAMES, "match")

# Reasons a snapshot is kept besides a rule (a rule's reason is its name with '-', e.g. keep-daily).
PROTECTED = "protected"
CURRENT = "current"
ANCESTOR = "ancestor-of-current"
NOT_MATCHED = "not-matched"
KEEP, REMOVE = "keep", "remove"
RULE_REASONS = frozenset(name.replace("_", "-") for name in RULE_NAMES)


class Policy(Frozen):
    """A validated policy: a count per rule given (absent rules are None) and an optional name glob."""

    _fields = ("counts", "match")
    __slots__ = _fields

    def __init__(self, counts: Mapping[str, int | None], match: str | None = None) -> None:
        self.counts = tuple(counts.get(name) for name in RULE_NAMES)
        self.match = match


class Candidate(Frozen):
    """One snapshot as the policy sees it. `seq` orders snapshots created in the same second (higher: newer)."""

    _fields = ("name", "time", "protected", "current", "ancestor", "seq")
    __slots__ = _fields

    def __init__(self, name: str, time: int, protected: bool = False, current: bool = False,
                 ancestor: bool = False, seq: int = 0) -> None:
        self.name = name
        self.time = time  # creation time, Unix seconds
        self.protected = protected
        self.current = current
        self.ancestor = ancestor  # an ancestor of the current snapshot
        self.seq = seq


class Decision(Frozen):
    _fields = ("name", "action", "reason")
    __slots__ = _fields

    def __init__(self, name: str, action: str, reason: str) -> None:
        self.name = name
        self.action = action  # "keep" or "remove"
        self.reason = reason  # the rule or safeguard that kept it; "" for a removal

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "action": self.action, "reason": self.reason}


def parse_policy(policy: Mapping[str, object]) -> Policy:
    """Validate a policy dict (keys of POLICY_KEYS); every bad key or value is named in one INVALID_ARG error."""
    if not isinstance(policy, Mapping):
        raise error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN_SNAPSHOT, "prune policy must be a dict")
    problems = [f"unknown policy key '{key}'" for key in policy if key not in POLICY_KEYS]
    counts: dict[str, int | None] = {}
    for name in RULE_NAMES:
        value = policy.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{name} must be an integer, not {value!r}")
        elif value < 0:
            problems.append(f"{name} must not be negative ({value})")
        else:
            counts[name] = value
    match = policy.get("match")
    if match is not None and (not isinstance(match, str) or not match):
        problems.append(f"match must be a non-empty glob string, not {match!r}")
    if not problems and not counts:
        problems.append("the policy names no keep rule (" + ", ".join(RULE_NAMES) + ")")
    if problems:
        raise error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN_SNAPSHOT, "; ".join(problems))
    return Policy(counts, match if isinstance(match, str) else None)


def _when(seconds: int, tz: tzinfo | None) -> datetime:
    """The snapshot's time of day (tz None: the host's local time). A REDEFINE'd creation time outside what the
    calendar functions take (negative, or beyond year 9999) counts as the earliest or the latest moment."""
    try:
        return datetime.fromtimestamp(seconds, tz)
    except (OverflowError, OSError, ValueError):
        edge = datetime.min if seconds < 0 else datetime.max
        return edge.replace(tzinfo=tz) if tz is not None else edge


def plan(candidates: Iterable[Candidate], policy: Policy, tz: tzinfo | None = None) -> list[Decision]:
    """One decision per candidate, newest first.

    Proxmox Backup Server's rules: the rules run in RULES' order over the snapshots no earlier rule decided,
    newest first; a rule keeps the newest snapshot of each of the latest N periods and removes the others
    of those periods; a period in which an earlier rule already kept a snapshot does not count. Protected
    and unmatched snapshots take no part. The current snapshot and its ancestors are kept whatever the rules say.
    """
    order = sorted(candidates, key=lambda c: (c.time, c.seq), reverse=True)
    times = {c.name: _when(c.time, tz) for c in order}
    decided: dict[str, tuple[str, str]] = {}
    for c in order:
        if policy.match is not None and not fnmatch.fnmatchcase(c.name, policy.match):
            decided[c.name] = (KEEP, NOT_MATCHED)
        elif c.protected:
            decided[c.name] = (KEEP, PROTECTED)
    for (rule, key_of), count in zip(RULES, policy.counts, strict=True):
        if count is None:
            continue
        key: Callable[[Candidate], object] = (
            (lambda c: c.name) if key_of is None else (lambda c, k=key_of: k(times[c.name])))  # type: ignore[misc]
        reason = rule.replace("_", "-")
        covered = {key(c) for c in order if decided.get(c.name, ("", ""))[1] in RULE_REASONS}
        periods: set[object] = set()
        for c in order:
            if c.name in decided:
                continue
            period = key(c)
            if period in covered:
                continue
            if period in periods:
                decided[c.name] = (REMOVE, "")
                continue
            if len(periods) >= count:
                break
            periods.add(period)
            decided[c.name] = (KEEP, reason)
    out = []
    for c in order:
        action, reason = decided.get(c.name, (REMOVE, ""))
        if action == REMOVE and (c.current or c.ancestor):
            action, reason = KEEP, CURRENT if c.current else ANCESTOR
        out.append(Decision(c.name, action, reason))
    return out

