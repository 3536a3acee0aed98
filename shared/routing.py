"""Which chat channels hear about which clusters (``PULLWATCH_ROUTES``), at what least severity.

A route: ``{"match": {"cluster": "<glob on cluster name or resource ID>", "subscription": "<id>",
"tag": "key=value"}, "min_severity": "error", "slack": "<NAME of the app setting holding the URL>"
| [names], "teams": ...}``. Every route whose ``match`` fits a cluster applies (all given match keys
must fit; an empty match fits every cluster). Clusters that no route matches go to the default
channels (``PULLWATCH_SLACK_WEBHOOK_URL`` / ``PULLWATCH_TEAMS_WEBHOOK_URL``) with
``PULLWATCH_MIN_SEVERITY``. Channels are named by setting (``slack:PULLWATCH_SLACK_WEBHOOK_URL``);
the URLs themselves are read only when sending and never shown.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.config import ConfigError, Settings
from shared.findings import Severity

KINDS = ("slack", "teams")
DEFAULT_SETTINGS = {"slack": "PULLWATCH_SLACK_WEBHOOK_URL", "teams": "PULLWATCH_TEAMS_WEBHOOK_URL"}
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
_MATCH_KEYS = ("cluster", "subscription", "tag")
_ROUTE_KEYS = ("match", "min_severity", "slack", "teams")
_SUBSCRIPTION = re.compile(r"^/subscriptions/([^/]+)", re.I)


@dataclass(frozen=True, order=True)
class Channel:
    """A webhook destination, named by the app setting that holds its URL."""

    kind: str
    setting: str

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.setting}"

    @classmethod
    def parse(cls, name: str) -> Channel:
        kind, _, setting = name.partition(":")
        return cls(kind, setting)


@dataclass(frozen=True)
class Route:
    index: int
    cluster: str | None
    subscription: str | None
    tag: tuple[str, str] | None
    min_severity: Severity
    channels: tuple[Channel, ...]

    def matches(self, cluster_id: str, name: str, tags: Mapping[str, str]) -> bool:
        if self.cluster is not None:
            pattern = self.cluster.lower()
            if not (
                fnmatch.fnmatchcase(name.lower(), pattern) or fnmatch.fnmatchcase(cluster_id.lower(), pattern)
            ):
                return False
        if self.subscription is not None:
            m = _SUBSCRIPTION.match(cluster_id)
            if not m or m.group(1).lower() != self.subscription.lower():
                return False
        if self.tag is not None:
            key, value = self.tag
            found = {k.lower(): v for k, v in tags.items()}  # Azure tag names are case-insensitive
            if found.get(key.lower()) != value:
                return False
        return True


def _fail(index: int, fieldname: str, problem: str) -> ConfigError:
    return ConfigError(f"PULLWATCH_ROUTES: route {index}: {fieldname}: {problem}")


def _text(index: int, fieldname: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(index, fieldname, "expected a non-empty string")
    return value.strip()


def _channels(index: int, kind: str, value: Any, env: Mapping[str, str]) -> list[Channel]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise _fail(index, kind, "expected the name of an app setting, or a list of names")
    out = []
    for i, name in enumerate(names):
        where = f"{kind}[{i}]" if isinstance(value, list) else kind
        if not isinstance(name, str) or not name.strip():
            raise _fail(index, where, "expected the name of an app setting")
        if "://" in name or not _SETTING_NAME.match(name.strip()):
            # never echo the value: it may be the webhook URL itself
            raise _fail(
                index,
                where,
                "expected the NAME of an app setting that holds the webhook URL, not the URL itself",
            )
        if not env.get(name.strip(), "").strip():
            raise _fail(index, where, f"app setting {name.strip()} is not set")
        out.append(Channel(kind, name.strip()))
    return out


def parse_route(index: int, raw: Any, env: Mapping[str, str]) -> Route:
    if not isinstance(raw, Mapping):
        raise _fail(index, "route", "expected a JSON object")
    unknown = sorted(set(raw) - set(_ROUTE_KEYS))
    if unknown:
        raise _fail(index, unknown[0], f"unknown field (expected: {', '.join(_ROUTE_KEYS)})")
    match = raw.get("match", {})
    if match is None:
        match = {}
    if not isinstance(match, Mapping):
        raise _fail(index, "match", "expected a JSON object")
    unknown = sorted(set(match) - set(_MATCH_KEYS))
    if unknown:
        raise _fail(index, f"match.{unknown[0]}", f"unknown field (expected: {', '.join(_MATCH_KEYS)})")
    cluster = _text(index, "match.cluster", match["cluster"]) if "cluster" in match else None
    subscription = (
        _text(index, "match.subscription", match["subscription"]) if "subscription" in match else None
    )
    tag = None
    if "tag" in match:
        text = _text(index, "match.tag", match["tag"])
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise _fail(index, "match.tag", "expected key=value")
        tag = (key.strip(), value.strip())
    try:
        min_severity = (
            Severity.parse(_text(index, "min_severity", raw["min_severity"]))
            if "min_severity" in raw
            else Severity.WARNING
        )
    except ValueError as exc:
        raise _fail(index, "min_severity", str(exc)) from None
    channels: list[Channel] = []
    for kind in KINDS:
        if kind in raw:
            channels += _channels(index, kind, raw[kind], env)
    if not channels:
        raise _fail(index, "slack/teams", "a route needs at least one slack or teams destination")
    return Route(index, cluster, subscription, tag, min_severity, tuple(channels))


class Router:
    """Validated routes plus the default channels, from :class:`Settings`."""

    def __init__(self, settings: Settings) -> None:
        env = settings.env
        self.routes = tuple(parse_route(i, raw, env) for i, raw in enumerate(settings.routes))
        try:
            self.default_min = Severity.parse(settings.min_severity)
        except ValueError as exc:
            raise ConfigError(f"PULLWATCH_MIN_SEVERITY: {exc}") from None
        urls = {"slack": settings.slack_webhook_url, "teams": settings.teams_webhook_url}
        self.defaults = tuple(Channel(kind, DEFAULT_SETTINGS[kind]) for kind in KINDS if urls[kind])
        self._env = env
        self._urls = {Channel(kind, DEFAULT_SETTINGS[kind]): urls[kind] for kind in KINDS if urls[kind]}

    def channels_for(
        self, cluster_id: str, *, name: str | None = None, tags: Mapping[str, str] | None = None
    ) -> dict[Channel, Severity]:
        """Channel → least severity it is told about, for one cluster. Several routes may reach one
        channel: it then hears the least severity any of them asks for."""
        name = name or cluster_id.rstrip("/").rsplit("/", 1)[-1]
        out: dict[Channel, Severity] = {}
        matched = False
        for route in self.routes:
            if not route.matches(cluster_id, name, tags or {}):
                continue
            matched = True
            for channel in route.channels:
                known = out.get(channel)
                if known is None or known.rank > route.min_severity.rank:
                    out[channel] = route.min_severity
        if not matched:
            out = dict.fromkeys(self.defaults, self.default_min)
        return out

    def url(self, channel: Channel) -> str:
        """The webhook URL of a channel (a secret: never log or show it)."""
        value = self._urls.get(channel) or self._env.get(channel.setting, "").strip()
        if not value:
            raise ConfigError(f"{channel.setting}: the app setting for channel {channel.name} is not set")
        return value
