"""Plugin options as data: each protocol folder has an `options.py` with its table
and the function that turns the values into its policy, or says why it cannot
run. plugin.py declares the tables; lsps/app.py builds the policies. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

Get = Callable[[str], Any]   # option name -> value (lightningd's, or the default)


class OptionError(ValueError):
    """An option value the plugin cannot run with: the message says which and why."""


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    description: str
    type: str = "int"      # "int", "string" or "flag"
    multi: bool = False


def flag(name: str, description: str) -> Option:
    return Option(name, None, description, "flag")


def at_least(get: Get, minimum: int, *names: str) -> None:
    for name in names:
        if get(name) < minimum:
            raise OptionError(f"{name} must be at least {minimum}, got {get(name)}")
