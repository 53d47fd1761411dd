"""Every command's --help shows its defaults and an example a user can run."""

import shlex
import sys

import pytest

from geoclim.cli import demo
from geoclim.cli.main import main
from tests.support.cli import console


def _help(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_geoclim_help_lists_every_command_and_examples(capsys):
    out = _help(capsys)
    for command in ("summary", "inspect", "samples", "ingest", "compare", "serve", "demo"):
        assert command in out
    assert "examples:" in out and "geoclim-train, geoclim-eval, geoclim-export" in out
    assert "(default: False)" in out  # --verbose


@pytest.mark.parametrize(
    ("command", "default", "example"),
    [
        ("summary", None, "geoclim summary naps_no2"),
        ("inspect", None, "--write-config conf_local"),
        ("samples", None, "geoclim samples"),
        ("ingest", "(default: reject)", "geoclim ingest ~/airdata"),
    ],
)
def test_subcommand_help_shows_defaults_and_an_example(capsys, command, default, example):
    out = _help(capsys, command)
    assert example in out
    if default is not None:
        assert default in out


def test_worded_defaults_are_not_repeated_and_none_is_not_shown(capsys):
    out = _help(capsys, "ingest")
    assert "(default: off)" in out and "(default: False)" not in out
    assert "(default: None)" not in _help(capsys, "inspect")


def test_export_and_compare_help_show_defaults_and_examples():
    from geoclim.cli.compare import build_parser as compare_parser
    from geoclim.cli.export import build_parser as export_parser

    export = export_parser().format_help()
    assert "(default: best)" in export and "(default: 8)" in export
    assert "geoclim-export RUN --register" in export and "(default: True)" not in export
    compare = compare_parser().format_help()
    assert "(default: table)" in compare and "geoclim compare RUN_A RUN_B" in compare


def test_demo_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        demo.main(["--help"])
    out = capsys.readouterr().out
    assert "(default: outputs/demo)" in out and "geoclim demo debug=smoke" in out


def _hydra_help(module, *overrides, tmp_path):
    proc = console(module.rsplit(".", 1)[1], *overrides, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_train_help_is_the_apps_with_this_command_lines_values(tmp_path):
    out = _hydra_help("geoclim.cli.train", "model=cnn", "seed=7", tmp_path=tmp_path)
    assert out.startswith("geoclim-train: train one model")
    assert "is powered by Hydra" not in out
    assert "network or baseline (options below) [cnn]" in out
    assert "global seed [7]" in out and "monitor" in out
    assert "geoclim-train data=synthetic_grid task=synthetic_no2 debug=smoke" in out
    assert "model: climatology, cnn," in out  # the config groups and their options


def test_eval_help_is_the_apps_with_defaults(tmp_path):
    out = _hydra_help("geoclim.cli.evaluate", tmp_path=tmp_path)
    assert out.startswith("geoclim-eval: score")
    assert "train | val | test [test]" in out and "[200]" in out
    assert "geoclim-eval run_dir=logs/train/runs/" in out and "split=val" in out


def test_explain_help_is_the_apps_with_defaults(tmp_path):
    out = _hydra_help("geoclim.cli.explain", tmp_path=tmp_path)
    assert out.startswith("geoclim-explain: attribute")
    assert "integrated_gradients" in out and "[256]" in out and "geoclim-explain run_dir=" in out


def test_demo_prints_commands_a_shell_can_run():
    cmd = [
        sys.executable,
        "-m",
        "geoclim.cli.train",
        "-m",
        "model=lstm,cnn",
        "hydra.sweep.dir=out dir/models",
        "task.targets=[no2]",
    ]
    line = demo.shell_command(cmd)
    assert line.startswith("geoclim-train -m model=lstm,cnn ")
    assert shlex.split(line) == ["geoclim-train", *cmd[3:]]
    assert "$" not in line and "geoclim.cli" not in line


def test_demo_command_of_the_plain_cli_and_of_other_programs():
    line = demo.shell_command([sys.executable, "-m", "geoclim.cli.main", "serve", "keygen", "x"])
    assert line == "geoclim serve keygen x"
    assert demo.shell_command(["curl", "-H", "X-API-Key: k"]) == "curl -H 'X-API-Key: k'"
