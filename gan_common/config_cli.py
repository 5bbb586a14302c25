"""Turns a frozen config dataclass into command-line flags and environment variables.

Each field becomes `--field-name` and `<PREFIX>FIELD_NAME`; a flag beats the environment, which beats
the field's default. Help text comes from `field(metadata={"help": ...})`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from typing import Any, Sequence, TypeVar

ConfigT = TypeVar("ConfigT")


class ConfigError(Exception):
    """A user mistake in configuration: printed as one line, never as a traceback."""


def option(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field carrying its help text (and optional argparse `choices`)."""
    return dataclasses.field(default=default, metadata={"help": help, **extra})


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(the scalar type, whether None is allowed) of `int`, `int | None`, `Optional[int]`."""
    if isinstance(annotation, (types.UnionType,)) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def _convert(text: str, kind: type, nullable: bool, name: str, choices: Sequence[Any] | None = None) -> Any:
    if kind is str and choices:  # `--log-level debug` means DEBUG: case is not worth a usage error
        matches = [choice for choice in choices if str(choice).lower() == text.strip().lower()]
        if matches:
            return matches[0]
    if nullable and text.strip().lower() in ("", "none", "auto"):
        return None
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {text!r}")
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"{name}: expected {kind.__name__}, got {text!r}") from None


def _flag_value(text: str, kind: type, nullable: bool, flag: str, choices: Sequence[Any] | None) -> Any:
    try:
        return _convert(text, kind, nullable, flag, choices)
    except ConfigError as error:  # argparse reports it with the usage line and exit status 2
        raise argparse.ArgumentTypeError(str(error).removeprefix(f"{flag}: ")) from None


def build_parser(cls: type, env_prefix: str, description: str, prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind, nullable = _base_type(hints[field.name])
        flag = "--" + field.name.replace("_", "-")
        env_name = env_prefix + field.name.upper()
        help_text = f"{field.metadata.get('help', '')} [env {env_name}]"
        if kind is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            choices = field.metadata.get("choices")
            parser.add_argument(flag, dest=field.name, default=argparse.SUPPRESS,
                                type=lambda t, k=kind, n=nullable, f=flag, c=choices: _flag_value(t, k, n, f, c),
                                choices=choices, help=help_text,
                                metavar=kind.__name__.upper())
    return parser


def parse_config(cls: type[ConfigT], argv: Sequence[str] | None, env_prefix: str, description: str,
                 environ: typing.Mapping[str, str] | None = None, prog: str | None = None) -> ConfigT:
    """Builds `cls` from flags, then environment variables, then defaults; raises ConfigError."""
    environ = os.environ if environ is None else environ
    parser = build_parser(cls, env_prefix, description, prog)
    flags = vars(parser.parse_args(argv))
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        env_name = env_prefix + field.name.upper()
        if field.name in flags:
            values[field.name] = flags[field.name]
        elif env_name in environ:
            kind, nullable = _base_type(hints[field.name])
            choices = field.metadata.get("choices")
            value = _convert(environ[env_name], kind, nullable, env_name, choices)
            if choices and value is not None and value not in choices:
                raise ConfigError(f"{env_name}: {value!r} is not one of {', '.join(map(str, choices))}")
            values[field.name] = value
    return cls(**values)


def describe(config: Any) -> str:
    """One line per field, for the resolved configuration printed at start-up."""
    return "\n".join(f"  {f.name} = {getattr(config, f.name)!r}" for f in dataclasses.fields(config))
