"""Patterns that other services run with a backtracking engine (the password complexity needs
lookaheads, which linear-time engines lack): refused when saved if they exceed a time limit."""

from __future__ import annotations

import regex

from settings.domain.validation import compile_php_regex

TIME_LIMIT_S = 0.05
TOO_SLOW = "The pattern takes too long to evaluate (catastrophic backtracking); not saved."

# Inputs that make nested or overlapping quantifiers backtrack.
_PROBES = ("a" * 64 + "!", "Aa1" * 40 + "\n", "x" * 512 + "\x00", "\t" * 200 + "A",
           "aA1!" * 64 + "\n" * 2)


def too_slow(pattern: str, *, limit_s: float = TIME_LIMIT_S) -> bool:
    """True when the delimited pattern exceeds the time limit on an adversarial input."""
    compiled = compile_php_regex(pattern)
    slow = regex.compile(compiled.pattern, compiled.flags & ~regex.UNICODE)
    for probe in _PROBES:
        try:
            slow.search(probe, timeout=limit_s)
        except TimeoutError:
            return True
    return False
