"""Every flag of every command is checked before work starts: one line on stderr, exit 2, no traceback."""

import argparse

import pytest

from tinytl.cli import build_parser, main


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _assert_refused(argv, capsys):
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
    return err


# The cases a new user hit (22 ended in a traceback before), and their neighbours.
CASES = [
    ["pretrain", "--epochs", "0"], ["pretrain", "--epochs", "-1"], ["pretrain", "--resolution", "0"],
    ["pretrain", "--resolution", "-64"], ["pretrain", "--batch-size", "0"], ["pretrain", "--batch-size", "-2"],
    ["pretrain", "--classes", "0"], ["pretrain", "--classes", "1"], ["pretrain", "--classes", "-5"],
    ["pretrain", "--per-class", "0"], ["pretrain", "--per-class", "-1"], ["pretrain", "--low-res", "0"],
    ["pretrain", "--low-res", "-8,16"], ["pretrain", "--low-res", "64"], ["pretrain", "--lr", "nan"],
    ["pretrain", "--lr", "-1e-3"], ["pretrain", "--classes", "1000", "--per-class", "100000"],
    ["collect", "--threads", "0"], ["collect", "--seed", "-1"], ["collect", "--resolutions", "100000"],
    ["collect", "--pairs", "0"],
    ["finetune", "--lr", "nan"], ["finetune", "--seed", "-1"], ["finetune", "--lr", "inf"],
    ["finetune", "--seed", str(10**30)], ["finetune", "--threads", str(10**9)],
    ["finetune", "--label-smoothing", "1"], ["finetune", "--resolution", "100000"],
    ["search", "--budget-mb", "40", "--seed", "-1"], ["search", "--budget-mb", "40", "--batch-size", "0"],
    ["search", "--budget-mb", "40", "--batch-size", "-1"], ["search", "--budget-mb", "40", "--frozen-bits", "0"],
    ["search", "--budget-mb", "40", "--frozen-bits", "-1"], ["search", "--budget-mb", "40", "--frozen-bits", "33"],
    ["search", "--budget-mb", "nan"],
    ["supernet-pretrain", "--steps", "-1,0,0,0"], ["supernet-pretrain", "--steps", "0,0,0,0"],
    ["supernet-pretrain", "--lrs", "nan,1e-3,1e-3,1e-3"], ["supernet-pretrain", "--resolutions", "16"],
    ["adapt", "--epochs", "0"], ["adapt", "--val-images", "0"], ["adapt", "--resolutions", "100000"],
    ["evaluate", "--resolution", "100000"], ["evaluate", "--threads", "0"],
    ["measure", "--seed", "-1"], ["measure", "--timing-steps", "-1"],
    ["search", "--budget-mb", "9", "--population", "3"],
    ["memory", "--backbone", "supernet", "--subnet", "[" * 100_000],
    ["memory", "--backbone", "supernet", "--subnet", "[" * 900 + "]" * 900],
    ["memory", "--frozen-bits", "33"], ["memory", "--classes", "0"], ["memory", "--resolution", "8"],
]


@pytest.mark.parametrize("argv", CASES, ids=[" ".join(c)[:60] for c in CASES])
def test_bad_flag_is_one_line_exit_2(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTL_HOME", str(tmp_path))
    _assert_refused(argv, capsys)


def test_every_numeric_flag_is_checked(capsys):
    """No command takes a bare int / float: each numeric flag refuses -1 and nan at parse time."""
    checked = 0
    for name, parser in _subparsers().items():
        for action in parser._actions:
            if not action.option_strings or action.type is None:
                continue
            assert action.type not in (int, float), f"{name} {action.option_strings[0]} takes an unchecked number"
            if getattr(action.type, "checked_number", False):
                for bad in ("-1", "nan"):
                    with pytest.raises(SystemExit) as done:
                        parser.parse_args([action.option_strings[0], bad])
                    assert done.value.code == 2
                    err = capsys.readouterr().err
                    assert len(err.strip().splitlines()) == 1 and action.option_strings[0] in err
                checked += 1
    assert checked >= 40


def test_help_lists_every_command_with_defaults(capsys):
    commands = set(_subparsers())
    assert {"memory", "measure", "finetune", "pretrain", "supernet-pretrain", "adapt", "search", "collect",
            "evaluate"} <= commands
    for name in commands:
        assert main([name, "--help"]) == 0
        assert "(default:" in capsys.readouterr().out, name


def test_help_names_each_default_once():
    """Every option with a value default says it exactly once in --help (not again where its text already does)."""
    for name, sub in _subparsers().items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if not action.option_strings or action.dest == "help":
                continue
            if not action.help:
                raise AssertionError(f"{name} {action.option_strings[0]} has no help text")
            text = formatter._expand_help(action)
            assert text.count("default") <= 1, (name, action.option_strings, text)
            if action.default is not None and not isinstance(action.default, bool):
                assert "default" in text, (name, action.option_strings, text)
