"""Errors users see, each naming the file, key or value that caused it."""
import difflib


class PPShiTuError(Exception):
    """Base class for errors that are the user's to fix (bad config, bad input)."""


class ConfigError(PPShiTuError, ValueError):
    """A config file or override is wrong: unknown key, wrong type, missing value."""


class WeightsError(PPShiTuError):
    """Model weights cannot be found, read or loaded (ppshitu.weights and its readers)."""


def did_you_mean(word, candidates, prefix=""):
    """' (did you mean X?)' for the closest candidate, or '' when none is close."""
    match = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {prefix}{match[0]}?)" if match else ""
