"""The daemon's configuration file (``tlswatch.yaml``, PRODUCT.md §5; reference: docs/config.md).

Strict: every model forbids unknown keys, every value is validated, and every problem is
reported at once as ``FILE:LINE: key.path: message``. Loading is two steps:

1. YAML → data with a line per key (:mod:`tlswatch.daemon.yamlsource`), ``${VAR}``
   expanded from the environment in ``store`` and ``notify`` (the places secrets live);
2. pydantic validation, then cross-checks pydantic cannot see (groups and channels that are
   referenced but not defined, duplicate targets); pydantic error locations are mapped back
   to lines.

The result, :class:`DaemonConfig`, holds the validated model and the resolved
:class:`MonitoredTarget` list (URL options merged over target, group and defaults).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tlswatch.analysis.policy import Threshold as ThresholdValue
from tlswatch.daemon.yamlsource import YamlDocument, YamlSyntaxError, load_yaml
from tlswatch.errors import ConfigError, TargetError
from tlswatch.targets import Target, parse_target

DEFAULT_CONFIG = "tlswatch.yaml"
DEFAULT_STORE = "sqlite:///tlswatch.db"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def parse_duration(value: Any) -> timedelta:
    """``30s``, ``15m``, ``6h``, ``1d``, ``2w`` (or a number of seconds) → timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m, 6h or 1d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a duration; use e.g. 30s, 15m, 6h, 1d")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return timedelta(seconds=seconds)


def format_duration(td: timedelta) -> str:
    s = td.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{int(s // size)}{unit}"
    return f"{s:g}s"


def _threshold(value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError("expected days (30d) or a share of the lifetime (33%)")
    text = str(value).strip()
    try:
        parsed = ThresholdValue.parse(text)  # the grammar the probe's policy uses
    except ValueError:
        raise ValueError(
            f"{value!r} is not a threshold; use days (30d) or a percentage (33%)"
        ) from None
    if parsed.percent and not 0 < parsed.value < 100:
        raise ValueError("a percentage threshold must be between 0 and 100")
    return text


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Threshold = Annotated[str, BeforeValidator(_threshold)]
Trust = Literal["system", "mozilla", "none"]
Severity = Literal["info", "warning", "critical"]
Labels = dict[str, str]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetSettings(Strict):
    """Settings a target inherits from its group and the defaults (None = inherit)."""

    interval: Duration | None = None
    timeout: Duration | None = None
    warn: Threshold | None = None
    crit: Threshold | None = None
    trust: Trust | None = None
    ca: str | None = None
    failures_before_alert: Annotated[int, Field(ge=1, le=100)] | None = None


class Defaults(Strict):
    interval: Duration = timedelta(hours=6)
    timeout: Duration = timedelta(seconds=10)
    #: None = the analysis default: 30d / 7d, or 33% / 10% of the lifetime for
    #: short-lived certificates (47 days or less), PRODUCT.md §3
    warn: Threshold | None = None
    crit: Threshold | None = None
    trust: Trust = "system"
    ca: str | None = None
    failures_before_alert: Annotated[int, Field(ge=1, le=100)] = 2
    #: first retry delay after a failed probe; doubles per failure, capped at the interval
    retry_backoff: Duration = timedelta(seconds=30)
    #: random spread of each run, as a share of the interval (0.1 = ±10%)
    jitter: Annotated[float, Field(ge=0, le=0.5)] = 0.1


class Group(TargetSettings):
    owner: str | None = None
    labels: Labels = Field(default_factory=dict)


class TargetEntry(TargetSettings):
    url: str
    name: str | None = None
    group: str | None = None
    owner: str | None = None
    labels: Labels = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _bare_url(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _parse(cls, value: str) -> str:
        try:
            parse_target(value)
        except TargetError as exc:
            raise ValueError(str(exc)) from None
        return value


class Scheduler(Strict):
    #: probes in flight at once, over all targets
    concurrency: Annotated[int, Field(ge=1, le=10000)] = 50
    #: probes in flight at once against one host
    per_host: Annotated[int, Field(ge=1, le=1000)] = 4


class RouteMatch(Strict):
    owner: str | None = None
    group: str | None = None
    target: str | None = None
    severity: Severity | None = None
    labels: Labels = Field(default_factory=dict)


class Route(Strict):
    match: RouteMatch = Field(default_factory=RouteMatch)
    notify: Annotated[list[str], Field(min_length=1)]


class Alerts(Strict):
    thresholds: Annotated[list[Annotated[int, Field(ge=1, le=3650)]], Field(min_length=1)] = [
        30,
        14,
        7,
        3,
        1,
    ]
    repeat: Duration | None = timedelta(hours=24)
    recovery: bool = True
    #: first retry delay of a failed delivery; doubles per attempt up to retry_max
    retry: Duration = timedelta(seconds=30)
    retry_max: Duration = timedelta(hours=1)
    #: a notification still undelivered this long after it was queued is dead-lettered
    dead_letter_after: Duration = timedelta(hours=24)
    #: seconds one delivery attempt may take
    send_timeout: Duration = timedelta(seconds=30)

    @field_validator("thresholds")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("thresholds must be distinct")
        return sorted(value, reverse=True)


class SilenceMatch(Strict):
    target: str | None = None
    fingerprint: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")] | None = None

    @model_validator(mode="after")
    def _one(self) -> SilenceMatch:
        if (self.target is None) == (self.fingerprint is None):
            raise ValueError("give exactly one of target or fingerprint")
        return self


class SilenceEntry(Strict):
    match: SilenceMatch
    until: datetime
    reason: str = ""

    @field_validator("until")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Retention(Strict):
    #: probe summaries older than this are deleted (certificates are kept)
    probes: Duration = timedelta(days=90)


class Web(Strict):
    listen: str = "127.0.0.1:8080"


class ConfigModel(Strict):
    store: str = DEFAULT_STORE
    defaults: Defaults = Field(default_factory=Defaults)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    groups: dict[str, Group] = Field(default_factory=dict)
    targets: Annotated[list[TargetEntry], Field(min_length=1)]
    notify: dict[str, str] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    alerts: Alerts = Field(default_factory=Alerts)
    silences: list[SilenceEntry] = Field(default_factory=list)
    retention: Retention = Field(default_factory=Retention)
    web: Web = Field(default_factory=Web)

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme.split("+", 1)[0] not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(
                "store must be sqlite:///PATH (relative to this file) or postgresql://USER@HOST/DB"
            )
        return value


@dataclass(frozen=True)
class MonitoredTarget:
    """One target as the daemon runs it: identity, parsed URL and resolved settings."""

    key: str  # the URL as written in the config: the target's identity in the store
    name: str
    target: Target
    owner: str | None
    group: str | None
    labels: Mapping[str, str]
    interval: timedelta
    failures_before_alert: int
    retry_backoff: timedelta
    jitter: float

    @property
    def host(self) -> str:
        return self.target.host


@dataclass(frozen=True)
class DaemonConfig:
    path: Path
    model: ConfigModel
    targets: tuple[MonitoredTarget, ...]
    store_url: str
    notify: Mapping[str, str] = field(default_factory=dict)

    @property
    def alerts(self) -> Alerts:
        return self.model.alerts


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigProblems(ConfigError):
    """Every problem of one config file (the message lists them, one a line)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _expand_env(doc: YamlDocument, add: Any) -> None:
    """Expand ``${VAR}`` / ``${VAR:-default}`` in ``store`` and ``notify`` values."""

    def expand(value: Any, path: tuple[str | int, ...]) -> Any:
        if not isinstance(value, str):
            return value

        def sub(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            add(path, f"environment variable {var} is not set")
            return ""

        return _ENV.sub(sub, value)

    data = doc.data
    if not isinstance(data, dict):
        return
    if "store" in data:
        data["store"] = expand(data["store"], ("store",))
    notify = data.get("notify")
    if isinstance(notify, dict):
        for k in list(notify):
            notify[k] = expand(notify[k], ("notify", str(k)))


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _cross_checks(data: dict[str, Any], add: Any) -> None:
    groups = _dict(data.get("groups"))
    channels = _dict(data.get("notify"))
    targets = _list(data.get("targets"))
    seen_urls: dict[str, int] = {}
    seen_names: dict[str, int] = {}
    for i, t in enumerate(targets):
        entry = {"url": t} if isinstance(t, str) else t
        if not isinstance(entry, dict):
            continue
        g = entry.get("group")
        if isinstance(g, str) and g not in groups:
            add(("targets", i, "group"), f"group {g!r} is not defined under groups")
        url = entry.get("url")
        if isinstance(url, str):
            if url in seen_urls:
                add(("targets", i), f"target {url!r} is already listed (targets[{seen_urls[url]}])")
            seen_urls.setdefault(url, i)
        name = entry.get("name")
        if isinstance(name, str):
            if name in seen_names:
                add(
                    ("targets", i, "name"),
                    f"name {name!r} is already used by targets[{seen_names[name]}]",
                )
            seen_names.setdefault(name, i)
    routes = _list(data.get("routes"))
    for i, r in enumerate(routes):
        if not isinstance(r, dict) or not isinstance(r.get("notify"), list):
            continue
        for j, ch in enumerate(r["notify"]):
            if isinstance(ch, str) and ch not in channels:
                add(("routes", i, "notify", j), f"channel {ch!r} is not defined under notify")
    for name, url in channels.items():
        if isinstance(url, str) and url:
            problem = _check_apprise_url(url)
            if problem:
                add(("notify", str(name)), problem)


def _check_apprise_url(url: str) -> str | None:
    import apprise

    if "://" not in url:
        return "not an Apprise URL (scheme://...)"
    try:
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    except Exception as exc:
        return f"Apprise cannot use this URL: {exc}"
    if plugin is None:
        return "Apprise does not understand this URL (unknown scheme or bad parameters)"
    return None


def _resolve_store(url: str, base: Path) -> str:
    scheme, _, rest = url.partition("://")
    s = scheme.lower()
    if s.startswith("sqlite"):
        path = rest[1:] if rest.startswith("/") else rest
        if path in ("", ":memory:"):
            raise ConfigProblems(
                [
                    Problem(
                        str(base), None, "store", "an in-memory store loses everything on restart"
                    )
                ]
            )
        p = Path(path)
        if not p.is_absolute():
            p = base / p
        return f"sqlite:///{p}"
    if s in ("postgresql", "postgres", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    return url


def _resolve_targets(model: ConfigModel, base: Path) -> tuple[MonitoredTarget, ...]:
    d = model.defaults
    out = []
    for entry in model.targets:
        group = model.groups.get(entry.group) if entry.group else None

        def pick(attr: str, entry: TargetEntry = entry, group: Group | None = group) -> Any:
            for source in (entry, group):
                if source is not None and getattr(source, attr) is not None:
                    return getattr(source, attr)
            return getattr(d, attr)

        parsed = parse_target(entry.url)
        inherited: dict[str, str] = {
            "timeout": f"{pick('timeout').total_seconds():g}",
            "trust": pick("trust"),
        }
        for key in ("warn", "crit"):
            if pick(key) is not None:
                inherited[key] = pick(key)
        ca = pick("ca")
        if ca:
            inherited["ca"] = str(Path(ca) if Path(ca).is_absolute() else base / ca)
        # URL options are the most specific: they win over the entry, group and defaults.
        merged = {**inherited, **dict(parsed.options)}
        target = parsed.with_options(**merged)
        labels = {**(group.labels if group else {}), **entry.labels}
        out.append(
            MonitoredTarget(
                key=entry.url,
                name=entry.name or entry.url,
                target=target,
                owner=entry.owner or (group.owner if group else None),
                group=entry.group,
                labels=labels,
                interval=pick("interval"),
                failures_before_alert=pick("failures_before_alert"),
                retry_backoff=d.retry_backoff,
                jitter=d.jitter,
            )
        )
    return tuple(out)


def load_config(path: str | Path) -> DaemonConfig:
    """Load and validate ``path``; raise :class:`ConfigProblems` listing every problem."""
    p = Path(path)
    fname = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigProblems([Problem(fname, None, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigProblems([Problem(fname, None, "", f"cannot read: {exc}")]) from None
    try:
        doc = load_yaml(text)
    except YamlSyntaxError as exc:
        raise ConfigProblems([Problem(fname, exc.line, "", str(exc))]) from None

    problems: list[Problem] = []

    def add(path: tuple[str | int, ...], message: str) -> None:
        problems.append(Problem(fname, doc.line_of(path), _dotted(path), message))

    for path_, message in doc.problems:
        add(path_, message)
    if doc.data is None:
        add((), "the file is empty; at least one target is required")
        raise ConfigProblems(problems)
    if not isinstance(doc.data, dict):
        add((), "the top level must be a mapping of keys (store, defaults, targets, ...)")
        raise ConfigProblems(problems)
    _expand_env(doc, add)
    model: ConfigModel | None = None
    try:
        model = ConfigModel.model_validate(doc.data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = _clean_loc(err["loc"])
            add(loc, _message(err))
    _cross_checks(doc.data, add)
    if problems or model is None:
        problems.sort(key=lambda q: (q.line or 0, q.key))
        raise ConfigProblems(problems)
    base = p.resolve().parent
    return DaemonConfig(
        path=p.resolve(),
        model=model,
        targets=_resolve_targets(model, base),
        store_url=_resolve_store(model.store, base),
        notify=dict(model.notify),
    )


def _clean_loc(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    # pydantic puts validator names ("function-after[...]") into locs of annotated types
    return tuple(
        part
        for part in loc
        if not (isinstance(part, str) and ("[" in part or part.startswith("function-")))
    )


def _message(err: Mapping[str, Any]) -> str:
    kind = err.get("type")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(err.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg


__all__ = [
    "DEFAULT_CONFIG",
    "ConfigModel",
    "ConfigProblems",
    "DaemonConfig",
    "MonitoredTarget",
    "Problem",
    "format_duration",
    "load_config",
    "parse_duration",
]
