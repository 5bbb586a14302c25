import dataclasses

import pytest

from gan_common.config_cli import ConfigError, option, parse_config


@dataclasses.dataclass(frozen=True)
class Example:
    store: str = option("store", "where")
    steps: int | None = option(None, "how many")
    rate: float = option(0.5, "how fast")
    verbose: bool = option(False, "talk")
    mode: str = option("a", "which", choices=("a", "b"))


def test_defaults_env_and_flags_in_order_of_precedence():
    assert parse_config(Example, [], "X_", "", environ={}) == Example()
    env = {"X_STEPS": "10", "X_RATE": "0.25", "X_VERBOSE": "true", "X_MODE": "b"}
    assert parse_config(Example, [], "X_", "", environ=env) == Example(steps=10, rate=0.25, verbose=True, mode="b")
    assert parse_config(Example, ["--steps", "3", "--no-verbose"], "X_", "", environ=env).steps == 3
    assert parse_config(Example, ["--no-verbose"], "X_", "", environ=env).verbose is False


def test_bad_environment_values_name_the_variable():
    with pytest.raises(ConfigError, match="X_STEPS"):
        parse_config(Example, [], "X_", "", environ={"X_STEPS": "many"})
    with pytest.raises(ConfigError, match="X_MODE"):
        parse_config(Example, [], "X_", "", environ={"X_MODE": "c"})


def test_bad_flag_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(Example, ["--steps", "many"], "X_", "", environ={})
    assert exit_info.value.code == 2
    assert "--steps" in capsys.readouterr().err


def test_choices_match_whatever_their_case():
    # `--log-level debug` is a user's obvious meaning of DEBUG, from a flag or the environment alike.
    assert parse_config(Example, ["--mode", "B"], "X_", "", environ={}).mode == "b"
    assert parse_config(Example, [], "X_", "", environ={"X_MODE": " A "}).mode == "a"
    assert parse_config(Example, ["--store", "Some/Path"], "X_", "", environ={}).store == "Some/Path"
