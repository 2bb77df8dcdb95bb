"""Numeric command-line flags with a declared range: the one way the tools' parsers read a number.

    p.add_argument("--k", type=int_range(1, 1000, "results"), default=10)
    p.add_argument("--threshold", type=finite_float(0, 1, low_open=True, what="cosine"))
    return ranged(p)

A value outside the range, NaN or an infinity is refused as the arguments are parsed, before any model
loads: a ConfigError naming the flag and the range ("--k must be an integer from 1 to 1000 (results), got
1000000000"), which the tools print as one line, exit 2; text that is no number at all is argparse's usage
error (exit 2). The range stays on the parser (`action.type.low`, `.high`, `.outside()`), so a test walks
every tool's parser and tries values outside each range (tests/library/test_hardening_round3b.py), as
tests/core/test_schema_ranges.py does for configs.
"""
import argparse
import math


class Bounded:
    """An argparse `type=`: a finite int or float within [low, high] (an open end excludes its bound)."""

    def __init__(self, kind, low, high, low_open=False, high_open=False, what=""):
        self.kind, self.low, self.high = kind, low, high
        self.low_open, self.high_open, self.what = bool(low_open), bool(high_open), what
        self.__name__ = "integer" if kind is int else "number"  # (argparse names the type in some errors)

    def describe(self):
        """e.g. "an integer from 1 to 1000 (results)", "a finite number > 0 and <= 1 (cosine)"."""
        noun = "an integer" if self.kind is int else "a finite number"
        if not self.low_open and not self.high_open:
            span = f"from {self.low} to {self.high}"
        else:
            span = f"{'>' if self.low_open else '>='} {self.low} and {'<' if self.high_open else '<='} {self.high}"
        return f"{noun} {span}" + (f" ({self.what})" if self.what else "")

    def contains(self, value):
        if self.kind is float and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __call__(self, text):
        """The number `text` says (its range is checked once parsed: ranged); argparse's error for no number."""
        try:
            return int(text, 10) if self.kind is int else float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}") from None

    def check(self, value, flag):
        """ConfigError naming `flag` unless `value` is within the range."""
        from ..errors import ConfigError

        if value is not None and not self.contains(value):
            raise ConfigError(f"{flag} must be {self.describe()}, got {value!r}")
        return value

    def outside(self):
        """Texts this type must refuse: just past each end, far past them, NaN and infinities, no number."""
        step = 1 if self.kind is int else max(1e-6, 1e-3 * (self.high - self.low))
        out = [self.low - step, self.high + step, -10 ** 20, 10 ** 20]
        out += [self.low] if self.low_open else []
        out += [self.high] if self.high_open else []
        texts = [str(v) for v in out] + ["nan", "inf", "-inf", "", "x"]
        return texts + (["1.5", "1e3"] if self.kind is int else [])

    def __repr__(self):
        return f"<{self.describe()}>"


def int_range(low, high, what=""):
    """An integer from `low` to `high` (both included)."""
    return Bounded(int, int(low), int(high), what=what)


def finite_float(low, high, low_open=False, high_open=False, what=""):
    """A finite number within [low, high]; `low_open` / `high_open` exclude that end."""
    return Bounded(float, float(low), float(high), low_open, high_open, what)


def check_ranges(parser, namespace):
    """ConfigError for the first parsed value outside its flag's range (every Bounded flag of `parser`)."""
    for action in parser._actions:
        if isinstance(action.type, Bounded) and action.option_strings:
            action.type.check(getattr(namespace, action.dest, None), action.option_strings[-1])
    return namespace


def ranged(parser):
    """`parser`, checking every Bounded flag's range whenever it parses (check_ranges); returns it."""
    parse = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        namespace, rest = parse(args, namespace)
        return check_ranges(parser, namespace), rest
    parser.parse_known_args = parse_known_args
    parser.checks_ranges = True
    return parser
