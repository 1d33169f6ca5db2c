"""The digits augmentation benchmark runs end to end at a tiny size and writes its results."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_augmentation_digits.py"


@pytest.mark.slow
def test_digits_benchmark_runs_at_a_tiny_size(tmp_path):
    out = tmp_path / "digits"
    result = subprocess.run([sys.executable, str(BENCHMARK), "--seeds", "0,1", "--train", "8", "--synthetic", "6",
                             "--classifiers", "mlp", "--samplers", "rhvae-hmc,jitter", "--max-steps", "10", "--patience-steps", "5", "--classes", "3",
                             "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = pd.read_csv(out.with_suffix(".tsv"), sep="\t")
    assert {"real", "classic"} <= set(runs["condition"]) and runs["accuracy"].between(0, 1).all()
    assert set(runs["seed"]) == {0, 1}
    quality = pd.read_csv(tmp_path / "digits_quality.tsv", sep="\t")
    assert len(quality) == 2 * 3 * 2  # seeds × classes × samplers, refused pools included
    kept = quality[~quality["refused"]]
    assert kept["diversity"].ge(0).all() and "jitter" in set(kept["sampler"])
    text = out.with_suffix(".txt").read_text()
    assert "test accuracy" in text and "sample quality and chains" in text
    assert "vs real:" in text or quality["refused"].all()
