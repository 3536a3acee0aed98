"""Label and field selectors, parsed as the API server parses them (``k8s.io/apimachinery/pkg/labels``)."""

from __future__ import annotations

import re
from collections.abc import Callable

from sandbox.kube.resources import Resource

# --- selectors -------------------------------------------------------------------------------


class SelectorError(ValueError):
    pass


_LABEL_KEY = r"(?:[a-z0-9A-Z.\-_]+/)?[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?"
_SET_RE = re.compile(rf"^\s*({_LABEL_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_RE = re.compile(rf"^\s*({_LABEL_KEY})\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_LABEL_KEY})\s*$")

LabelTest = Callable[[dict[str, str]], bool]


def _split_terms(text: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    terms.append(cur)
    return [t for t in terms if t.strip()]


def _set_test(key: str, values: set[str], inside: bool) -> LabelTest:
    return lambda labels: (labels.get(key) in values) == inside


def _equality_test(key: str, value: str, equal: bool) -> LabelTest:
    return lambda labels: (labels.get(key) == value) == equal


def _exists_test(key: str, present: bool) -> LabelTest:
    return lambda labels: (key in labels) == present


def parse_label_selector(text: str) -> list[LabelTest]:
    tests: list[LabelTest] = []
    for term in _split_terms(text):
        if m := _SET_RE.match(term):
            key, op = m.group(1), m.group(3)
            values = {v.strip() for v in m.group(4).split(",") if v.strip()}
            tests.append(_set_test(key, values, op == "in"))
        elif m := _EQ_RE.match(term):
            key, op, value = m.group(1), m.group(3), m.group(4)
            tests.append(_equality_test(key, value, op != "!="))
        elif m := _EXISTS_RE.match(term):
            neg, key = m.group(1) == "!", m.group(2)
            tests.append(_exists_test(key, not neg))
        else:
            raise SelectorError(f"unable to parse requirement: {term.strip()!r}")
    return tests


def parse_field_selector(text: str, resource: Resource) -> list[tuple[str, bool, str]]:
    out: list[tuple[str, bool, str]] = []
    allowed = ("metadata.name", "metadata.namespace", *resource.fields)
    for term in _split_terms(text):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        label, op, value = m.group(1), m.group(2), m.group(3)
        if label not in allowed:
            raise SelectorError(f"field label not supported: {label}")
        out.append((label, op == "!=", value))
    return out
