"""Careless and hostile command lines: every mistake is one line and the documented
exit code (2 bad input, 1 failed operation), never a traceback; library warnings stay
off stderr; nothing the data holds can drive the terminal; output paths stay inside."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adit_workbench.cli import _common, main
from adit_workbench.cli.deid import _OPTION_NAMES
from adit_workbench.config import get_settings
from tests.inputs import corpus

Run = Callable[..., tuple[int, str, str]]
BIG = str(2**63)


@pytest.fixture
def cli(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Run]:
    """Run one command in a fresh embedded workbench: ``(code, stdout, stderr)``."""
    get_settings.cache_clear()

    def run(*args: str) -> tuple[int, str, str]:
        _common.reset()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    _common.reset()


def _one_line(err: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["tokens", "revoke", BIG],
        ["tokens", "revoke", "0"],
        ["tokens", "revoke", "-1"],
        ["tokens", "revoke", "1e3"],
        ["jobs", "show", BIG],
        ["jobs", "cancel", BIG],
        ["jobs", "delete", "99999999999999999999999"],
        ["jobs", "retry", "x"],
        ["jobs", "reset-task", BIG],
        ["jobs", "export", BIG, "out.csv"],
        ["jobs", "list", "--limit", "0"],
        ["jobs", "list", "--status", "DONE\x1b[2J"],
        ["nodes", "add-server", "X", "--ae", "A", "--host", "h", "--port", "70000"],
        ["query", "NOWHERE", "--study-date", "2020-01-01"],
        ["query", "NOWHERE", "--birth-date", "19700101-19800101"],
        ["mass-transfer", "--from", "A", "--to", "B", "--start", "2020-13-01",
         "--end", "2020-12-31", "--filters", "/dev/null"],
        ["pseudonymize", "/nonexistent-in", "/tmp/out", "--workers", "0"],
        ["pseudonymize", "/nonexistent-in", "/tmp/out"],
        ["batch-query", "/nonexistent.csv", "--from", "X"],
        ["tokens", "create", "--expires", "9999"],
        ["no-such-command"],
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(cli: Run, args: list[str]) -> None:
    code, out, err = cli(*args)
    assert code == 2, (out, err)
    assert _one_line(err), err


def test_unknown_ids_in_range_fail_cleanly(cli: Run) -> None:
    for args in (["jobs", "show", str(2**63 - 1)], ["tokens", "revoke", str(2**63 - 1)]):
        code, _, err = cli(*args)
        assert code in (1, 2) and _one_line(err), err


def test_pseudonymize_hostile_folder(cli: Run, tmp_path: Path) -> None:
    corpus.write(tmp_path / "in")
    out = tmp_path / "out"
    code, stdout, err = cli(
        "pseudonymize", str(tmp_path / "in"), str(out), "--pseudonym", "../../x", "--workers", "1"
    )
    assert code == 1 and _one_line(err), err  # damaged files refused: a failed operation
    assert "Warning" not in err and "\x1b" not in stdout
    for case in corpus.cases():
        if case.expect == "refused":
            assert f"refused {case.name}: " in stdout
    assert all(out.resolve() in p.resolve().parents for p in corpus.files_below(out))
    assert not (tmp_path / "x").exists()
    code, stdout, err = cli("leak-scan", str(tmp_path / "in"), str(out))
    assert code in (0, 1) and "Traceback" not in err and "\x1b" not in stdout


def test_pseudonymize_what_if_names_refusals_and_writes_nothing(cli: Run, tmp_path: Path) -> None:
    corpus.write(tmp_path / "in")
    code, stdout, err = cli(
        "pseudonymize", str(tmp_path / "in"), str(tmp_path / "out"), "--what-if"
    )
    assert code == 0 and "Traceback" not in err, err
    assert "== fifo.dcm: not a regular file, would be skipped" in stdout
    assert "== cut_study_uid.dcm: element (0020,000D)" in stdout
    assert "\x1b" not in stdout and not (tmp_path / "out").exists()


def test_query_of_a_damaged_folder_names_each_refusal(cli: Run, tmp_path: Path) -> None:
    corpus.write(tmp_path / "in")
    assert cli("nodes", "add-folder", "HOSTILE", str(tmp_path / "in"))[0] == 0
    code, out, err = cli("query", "HOSTILE", "--level", "instance")
    assert code == 0 and "Traceback" not in err and "\x1b" not in out + err
    refusals = [line for line in err.splitlines() if ": refused " in line]
    assert {line.split(": refused ")[1].split(":")[0] for line in refusals} == {
        c.name for c in corpus.cases() if c.expect == "refused"
    }


def test_query_and_lists_strip_terminal_escapes(cli: Run, tmp_path: Path) -> None:
    corpus.write(tmp_path / "in", [c for c in corpus.cases() if c.name.startswith("escape")])
    assert cli("nodes", "add-folder", "HOSTILE", str(tmp_path / "in"))[0] == 0
    for fmt in ("table", "csv"):
        code, out, err = cli("query", "HOSTILE", "--format", fmt)
        assert code == 0, err
        assert "CT?[2J" in out and "\x1b" not in out and "\x07" not in out
    code, out, err = cli("tokens", "create", "--description", "desc" + corpus.ESC)
    assert code == 0, err
    code, out, _ = cli("tokens", "list")
    assert "desc?[2J" in out and "\x1b" not in out
    assert "\x1b" not in cli("nodes", "list")[1]


def test_option_names_in_help_match_the_profile() -> None:
    from adit_workbench.deid import Option

    names = {o.name.lower().replace("_", "-") for o in Option if o.name and o is not Option.BASIC}
    assert set(_OPTION_NAMES) == names


def test_help_does_not_import_heavy_libraries() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from adit_workbench.cli import main; main(['--help']); "
        "print(sorted(m for m in ('pandas', 'sqlalchemy', 'pydicom', 'pynetdicom') "
        "if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip().endswith("[]"), out.stdout[-300:] + out.stderr[-300:]
