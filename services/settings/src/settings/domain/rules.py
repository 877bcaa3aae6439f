"""Import rules: MISP's delimited regexes run on RE2 (linear time, so no pattern can make an
import loop forever), import regexps applied to a candidate value, blocklist uuids.

Pure: no I/O. RE2 has no backreferences or lookarounds; a pattern that needs them is refused
with a clear message rather than run on a backtracking engine.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import re2

from settings.domain.errors import InvalidRuleError

# PHP's PCRE modifiers that have an RE2 equivalent (inline flags); `e` is stripped (as MISP
# does), `u` and `D` change nothing here.
_INLINE_FLAGS = {"i": "i", "m": "m", "s": "s", "U": "U"}
_IGNORED_MODIFIERS = frozenset("euD")
_BRACKETS = {"(": ")", "[": "]", "{": "}", "<": ">"}
MAX_PATTERN_LENGTH = 255  # MISP's column width
ALL_TYPES = "ALL"


@dataclass(frozen=True)
class CompiledRule:
    pattern: str
    regex: Any  # re2._Regexp


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # the error is returned to the caller, not printed by RE2
    options.max_mem = 8 << 20
    return options


@lru_cache(maxsize=1024)
def compile_rule(pattern: str) -> CompiledRule:
    """Compile `/.../imsU`-style patterns on RE2; InvalidRuleError with the reason."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise InvalidRuleError("The regex can not be empty.")
    text = pattern.strip()
    if len(text) > MAX_PATTERN_LENGTH:
        raise InvalidRuleError(f"The regex is longer than {MAX_PATTERN_LENGTH} characters.")
    delimiter = text[0]
    if delimiter.isalnum() or delimiter == "\\" or delimiter.isspace():
        raise InvalidRuleError("Invalid regex: a delimiter must not be alphanumeric, a "
                               "backslash or a space (write it as /pattern/flags).")
    end = text.rfind(_BRACKETS.get(delimiter, delimiter))
    if end <= 0:
        raise InvalidRuleError(f"Invalid regex: no ending delimiter {delimiter!r} found.")
    body, modifiers = text[1:end], text[end + 1:]
    flags = ""
    for modifier in modifiers:
        if modifier in _INLINE_FLAGS:
            flags += _INLINE_FLAGS[modifier]
        elif modifier not in _IGNORED_MODIFIERS:
            raise InvalidRuleError(f"Invalid regex: unknown modifier {modifier!r}.")
    if not body:
        raise InvalidRuleError("The regex can not be empty.")
    source = f"(?{''.join(sorted(set(flags)))}){body}" if flags else body
    try:
        regex = re2.compile(source, _options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise InvalidRuleError(f"Invalid regex: {reason} (RE2 syntax: no backreferences or "
                               "lookarounds).") from None
    return CompiledRule(pattern=pattern, regex=regex)


_REPLACEMENT_TOKEN = re.compile(r"\\\\|\\(\d{1,2})|\$(\d{1,2})|\$\{(\d{1,2})\}")


def expand_replacement(replacement: str, match: Any) -> str:
    """PHP `preg_replace` replacement text: `\\1`, `$1`, `${1}` are groups, `\\\\` is `\\`."""
    out: list[str] = []
    position = 0
    for token in _REPLACEMENT_TOKEN.finditer(replacement):
        out.append(replacement[position:token.start()])
        position = token.end()
        if token.group(0) == "\\\\":
            out.append("\\")
            continue
        group = int(token.group(1) or token.group(2) or token.group(3))
        try:
            out.append(match.group(group) or "")
        except (IndexError, re2.error):
            out.append("")  # PHP: a group that does not exist is empty
    out.append(replacement[position:])
    return "".join(out)


@dataclass(frozen=True)
class RegexpRule:
    id: int
    regexp: str
    replacement: str
    type: str = ALL_TYPES


@dataclass(frozen=True)
class RuleOutcome:
    """What an import would store: the rewritten value, or `blocked` by the rule that did it."""

    original: str
    value: str | None
    blocked: bool
    blocked_by: int | None
    applied: tuple[int, ...]


def applies_to(rule: RegexpRule, attribute_type: str | None) -> bool:
    return rule.type == ALL_TYPES or attribute_type is None or rule.type == attribute_type


def apply_rules(value: str, rules: Sequence[RegexpRule],
                attribute_type: str | None = None) -> RuleOutcome:
    """MISP's import regexps in id order: a blank replacement blocks a matching value, any
    other rewrites it; rules that cannot compile are skipped (as PHP would, with a warning)."""
    current = value
    applied: list[int] = []
    for rule in sorted(rules, key=lambda r: r.id):
        if not applies_to(rule, attribute_type):
            continue
        try:
            regex = compile_rule(rule.regexp).regex
        except InvalidRuleError:
            continue
        if rule.replacement == "":
            if regex.search(current) is not None:
                return RuleOutcome(value, None, True, rule.id, (*applied, rule.id))
            continue
        replaced = regex.sub(lambda m, r=rule.replacement: expand_replacement(r, m), current)
        if replaced != current:
            applied.append(rule.id)
            current = replaced
    return RuleOutcome(value, current, False, None, tuple(applied))


def allowed_by(value: str, patterns: Iterable[str]) -> str | None:
    """The first signature-allowlist pattern that matches the value (it stays out of NIDS)."""
    for pattern in patterns:
        try:
            if compile_rule(pattern).regex.search(value) is not None:
                return pattern
        except InvalidRuleError:
            continue
    return None


def parse_uuids(raw: Any) -> list[str]:
    """MISP's `uuids`: a list, or a newline-separated string; only 36-character entries count."""
    if isinstance(raw, str):
        items: list[Any] = raw.splitlines()
    elif isinstance(raw, list):
        items = raw
    else:
        items = []
    out: list[str] = []
    for item in items:
        if isinstance(item, str) and len(item.strip()) == 36:
            out.append(item.strip())
    return out


def normalise_uuid(value: str) -> str | None:
    """The canonical lower-case uuid, or None for text that is not a uuid."""
    try:
        return str(uuid.UUID(value)) if len(value) == 36 else None
    except (ValueError, AttributeError, TypeError):
        return None
