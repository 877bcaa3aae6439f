"""MISP's password policy: a minimal length and a complexity regex run with a time limit.

MISP's default complexity pattern needs lookaheads, which linear-time engines lack; the `regex`
module runs it with a timeout, so a pathological pattern cannot hold a worker.
"""

from __future__ import annotations

from typing import Any

import regex

from misp_contracts.settings_catalogue import DEFAULT_PASSWORD_COMPLEXITY

LENGTH_NOT_MET = "Password length requirement not met."
COMPLEXITY_NOT_MET = "Password complexity requirement not met."
SAME_AS_CURRENT = "Submitted new password cannot be the same as the current one"
CONFIRM_MISMATCH = "Password confirmation does not match."
DEFAULT_LENGTH = 12
REGEX_TIMEOUT_S = 0.05
MAX_PASSWORD = 1024

_FLAGS = {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL, "x": regex.VERBOSE,
          "u": regex.UNICODE, "D": 0}
_BRACKETS = {"(": ")", "[": "]", "{": "}", "<": ">"}


class PatternError(ValueError):
    """The complexity pattern is not a valid delimited regex, or it is too slow."""


def compile_policy(pattern: str) -> regex.Pattern[str]:
    """A delimited PCRE pattern (`/.../flags`) as a `regex` pattern; PatternError if invalid."""
    pattern = pattern.strip()
    if len(pattern) < 2 or pattern[0].isalnum() or pattern[0] in "\\ ":
        raise PatternError("not a delimited regular expression")
    end = pattern.rfind(_BRACKETS.get(pattern[0], pattern[0]))
    if end <= 0:
        raise PatternError("no ending delimiter")
    flags = 0
    for modifier in pattern[end + 1:]:
        if modifier not in _FLAGS:
            raise PatternError(f"unknown modifier {modifier!r}")
        flags |= _FLAGS[modifier]
    try:
        return regex.compile(pattern[1:end], flags | regex.VERSION0)
    except regex.error as exc:
        raise PatternError(str(exc)) from exc


def probe_pattern(pattern: str, timeout_s: float = REGEX_TIMEOUT_S) -> None:
    """Refuse a pattern that is invalid or exceeds the time limit on adversarial inputs
    (for the settings that save it)."""
    compiled = compile_policy(pattern)
    for probe in ("a" * 64 + "!", "Aa1" * 40 + "\n", "x" * 512, "\t" * 200 + "A"):
        try:
            compiled.search(probe, timeout=timeout_s)
        except TimeoutError as exc:
            raise PatternError("the pattern exceeds the time limit") from exc


def policy_errors(password: Any, *, min_length: Any, complexity: Any,
                  timeout_s: float = REGEX_TIMEOUT_S) -> list[str]:
    """MISP's messages for a new password under the policy (empty: acceptable)."""
    if not isinstance(password, str) or not password:
        return ["A password is required."]
    errors: list[str] = []
    length = min_length if isinstance(min_length, int) and min_length > 0 else DEFAULT_LENGTH
    if len(password) < length:
        errors.append(LENGTH_NOT_MET)
    if len(password) > MAX_PASSWORD:
        errors.append(f"A password can be at most {MAX_PASSWORD} characters.")
        return errors
    pattern = complexity if isinstance(complexity, str) and complexity.strip() \
        else DEFAULT_PASSWORD_COMPLEXITY
    try:
        compiled = compile_policy(pattern)
    except PatternError:
        compiled = compile_policy(DEFAULT_PASSWORD_COMPLEXITY)
    try:
        matched = compiled.search(password, timeout=timeout_s) is not None
    except TimeoutError:
        matched = False  # a pattern that cannot decide in time rejects (fail closed)
    if not matched:
        errors.append(COMPLEXITY_NOT_MET)
    return errors
