"""Each command that writes an output folder appends its log to ``medaug.log`` there."""

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medaug.cli import main
from medaug.logs import LOG_FILE, folder_log
from medaug.output_folder import claim_output

ROOT = Path(__file__).resolve().parents[1]
HEADER = re.compile(r"^===== medaug example-cohort .* \| medaug \S+ \| \d{4}-\d\d-\d\dT[\d:]+[+-][\d:]+ =====$", re.M)
TINY_COHORT = ["example-cohort", "bids", "--subjects-per-label", "1", "--resolution", "6"]


@pytest.mark.slow
def test_example_cohort_logs_to_its_folder_appends_on_resume_and_stays_valid_bids(tmp_path, validator_errors,
                                                                                  monkeypatch, capsys):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.run([sys.executable, "-m", "medaug", *TINY_COHORT], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "INFO medaug.simulation.example_cohort: simulating 2 subject(s)" in first.stderr
    assert "DEBUG" not in first.stderr  # the console stays at INFO
    monkeypatch.chdir(tmp_path)
    assert main(TINY_COHORT) == 0  # resumes
    assert main([*TINY_COHORT[:3], "2", *TINY_COHORT[4:]]) == 2  # other parameters: refused
    assert "choose a new output folder" in capsys.readouterr().err

    log = (tmp_path / "bids" / LOG_FILE).read_text()
    assert len(HEADER.findall(log)) == 3
    assert re.search(r"^\d{4}-\d\d-\d\d [\d:,]+ DEBUG medaug\.logs: python ", log, re.M)
    assert re.search(r"^\d{4}-\d\d-\d\d [\d:,]+ INFO medaug\.simulation\.example_cohort: simulating 2 ", log, re.M)
    assert "INFO medaug.simulation.example_cohort: resuming the example cohort in bids" in log
    assert "ERROR medaug.logs: the command ended: OutputExistsError: bids holds an example cohort built " in log
    assert "Traceback (most recent call last)" in log
    assert validator_errors(tmp_path / "bids") == []


def test_run_logs_to_the_output_of_its_yaml_and_the_log_is_not_a_foreign_file(study_config, tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    (out / LOG_FILE).write_text("a run interrupted before it claimed the folder\n")
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study_config(tmp_path / "no-bids", "study").to_dict()))

    assert main(["run", str(path)]) == 2
    assert "is not a BIDS dataset" in capsys.readouterr().err  # not "holds files that no study run wrote"
    log = (out / LOG_FILE).read_text()
    assert log.startswith("a run interrupted")
    assert f"===== medaug run {path} | medaug " in log
    assert "ERROR medaug.logs: the command ended: InputDataError: " in log


def test_a_command_refused_before_writing_leaves_no_folder(tmp_path, capsys):
    assert main(["split", str(tmp_path / "missing.tsv"), "-o", str(tmp_path / "split"), "--test-per-label", "1"]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "split").exists()


def test_records_wait_until_the_command_claims_the_folder_and_levels_are_restored(tmp_path):
    package = logging.getLogger("medaug")
    level = package.level
    with folder_log(tmp_path / "out", "medaug test"):
        logging.getLogger("medaug.test").debug("before the folder")
        (tmp_path / "out").mkdir()
        logging.getLogger("medaug.test").debug("in a folder the command has not claimed")
        assert not (tmp_path / "out" / LOG_FILE).exists()
        claim_output(tmp_path / "out", "test")
        logging.getLogger("medaug.test").info("after the folder")
        assert (tmp_path / "out" / LOG_FILE).exists()  # written as records come, not at the end
    lines = (tmp_path / "out" / LOG_FILE).read_text().splitlines()
    assert lines[0].startswith("===== medaug test | medaug ")
    assert [line.split(" ", 2)[2] for line in lines[2:]] == [
        "DEBUG medaug.test: before the folder", "DEBUG medaug.test: in a folder the command has not claimed",
        "INFO medaug.test: after the folder"]
    assert package.level == level and all(not hasattr(h, "pending") for h in logging.getLogger().handlers)
