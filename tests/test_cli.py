import subprocess
import sys

import pandas as pd
import pytest

import medaug
from medaug.cli import main


def test_package_has_version():
    assert medaug.__version__.count(".") == 2


def test_help_and_version_from_console():
    help_out = subprocess.run([sys.executable, "-m", "medaug", "--help"], capture_output=True, text=True)
    assert help_out.returncode == 0
    assert "example-cohort" in help_out.stdout
    version = subprocess.run([sys.executable, "-m", "medaug", "--version"], capture_output=True, text=True)
    assert version.returncode == 0
    assert version.stdout.strip() == f"medaug {medaug.__version__}"


@pytest.mark.parametrize("argv, message", [
    (["no-such-command"], "invalid choice"),
    (["example-cohort"], "required"),
    (["example-cohort", "out", "--subjects-per-label", "abc"], "invalid int value"),
    (["example-cohort", "out", "--subjects-per-label", "-3"], "subjects_per_label must be a positive integer"),
    (["example-cohort", "out", "--labels", "CN,XX"], "unknown diagnosis label"),
    (["example-cohort", "out", "--resolution", "0"], "resolution must be > 0"),
    (["example-cohort", "out", "--sessions", "M012,M000"], "increasing order"),
    (["example-cohort", "out", "--missing-rate", "1.5"], "missing_rate"),
    (["example-cohort", "out", "--jobs", "0"], "jobs must be"),
    (["run", "missing.yaml"], "study config missing.yaml not found"),
])
def test_bad_arguments_exit_2_with_message(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and message in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().out


def test_cohort_and_split_commands(tiny_cohort, tmp_path, capsys):
    out, truth = tiny_cohort
    table = tmp_path / "cohort.tsv"
    assert main(["cohort", str(out), "-o", str(table)]) == 0
    assert "images written" in capsys.readouterr().out
    assert main(["split", str(table), "-o", str(tmp_path / "split"), "--test-per-label", "1",
                 "--p-threshold", "0.0", "--seed", "2"]) == 0
    assert (tmp_path / "split" / "split.tsv").exists()
    with pytest.raises(SystemExit) as exit_info:  # output inside the input dataset
        main(["cohort", str(out), "-o", str(out / "cohort.tsv")])
    assert exit_info.value.code == 2
    assert main(["split", str(tmp_path / "missing.tsv"), "-o", str(tmp_path / "s2"), "--test-per-label", "1"]) == 2
    assert "not found" in capsys.readouterr().err


def test_cohort_command_baseline_and_labels(tiny_cohort, tmp_path):
    out, truth = tiny_cohort
    labels = tmp_path / "labels.tsv"
    assert main(["cohort", str(out), "-o", str(tmp_path / "c.tsv"), "--baseline", "--labels", str(labels)]) == 0
    table = pd.read_csv(labels, sep="\t")
    assert list(table.columns) == ["participant_id", "session_id", "diagnosis", "age", "sex"]
    assert table["participant_id"].is_unique and set(table["session_id"]) == {"ses-M000"}
    assert len(table) == truth["participant_id"].nunique()


def test_run_rejects_a_bad_study_config(tmp_path, capsys):
    config = tmp_path / "study.yaml"
    config.write_text("name: t\noutput: out\ndata: {bids: bids}\ncolour: red\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(config)])
    assert exit_info.value.code == 2 and "unknown option(s) colour; allowed:" in capsys.readouterr().err
    config.write_text("name: t\noutput: out\ndata: {bids: bids}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(config), "--runs", "0"])
    assert exit_info.value.code == 2 and "runs must be ≥ 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
