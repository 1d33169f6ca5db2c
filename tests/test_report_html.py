"""report.html of a tiny hand-made study folder (no training): self-contained, every figure a PNG
data URI, and, where Chromium is installed, every figure loads in a real browser."""

import base64
import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import balanced_accuracy_score

from medaug.io import write_text, write_tsv
from medaug.study.config import PreprocessingSection
from medaug.study.data import ImageSet, StudyData
from medaug.study.html_report import StudyImages, nearest_real, template_outline
from medaug.study.report import accuracy_intervals, write_report

SHAPE = (12, 14, 10)
LABELS = ("CN", "AD")
CONDITIONS = (("real", "real", "n/a", 0), ("real+synthetic-prior-n5", "real+synthetic", "prior", 5))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _image_set(prefix: str, per_label: int, generator: torch.Generator) -> ImageSet:
    rows = pd.DataFrame({"participant_id": [f"sub-{prefix}{i:02d}" for i in range(2 * per_label)],
                         "session_id": "ses-M000", "diagnosis": [LABELS[i % 2] for i in range(2 * per_label)]})
    return ImageSet(rows, torch.rand(2 * per_label, 1, *SHAPE, generator=generator),
                    torch.tensor([i % 2 for i in range(2 * per_label)]))


def _task_rows(run_dir, classifier, condition, kind, sampler, per_class, run, test: ImageSet, rng) -> dict:
    """Write one task folder (predictions, a CNN's training log) and return its metrics row."""
    truth = np.array(LABELS)[test.labels.numpy()]
    # the cnn learned the class prior (constant probabilities); the svm looks at the images
    p_ad = np.full(len(truth), 0.554) if classifier == "cnn" else np.clip((truth == "AD") * 0.6 + rng.uniform(0, 0.5, len(truth)), 0, 1)
    predicted = np.where(p_ad >= 0.5, "AD", "CN")
    folder = run_dir / "runs" / classifier / condition / f"run-{run:02d}"
    write_tsv(folder / "predictions.tsv", test.rows[["participant_id", "session_id"]].assign(
        test_set="test", true_label=truth, predicted_label=predicted, proba_CN=1 - p_ad, proba_AD=p_ad))
    if classifier == "cnn":
        write_tsv(folder / "training_log.tsv", pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.7, 0.6, 0.55 + 0.01 * run],
                                                             "val_balanced_accuracy": [0.5, 0.5, 0.5]}))
    score = balanced_accuracy_score(truth, predicted)
    return {"classifier": classifier, "condition": condition, "kind": kind, "sampler": sampler,
            "synthetic_per_class": per_class, "copies": 0, "run": run, "seed": run, "test_set": "test",
            **{m: score for m in ("balanced_accuracy", "sensitivity", "specificity", "accuracy", "f1", "auc")}}


def _write_study(run_dir, outline: bool = True):
    """A finished-looking study folder and its report, written by write_report."""
    generator, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    data = StudyData(_image_set("tr", 6, generator), _image_set("va", 2, generator), _image_set("te", 4, generator), {})
    pools = {"prior": {code: torch.rand(5, 1, *SHAPE, generator=generator) for code in range(2)}}
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij"))
    mask = (grid ** 2).sum(0) < 0.6 if outline else None
    metrics = pd.DataFrame([_task_rows(run_dir, classifier, *condition, run, data.test, rng)
                            for run in range(2) for classifier in ("cnn", "sklearn-svm") for condition in CONDITIONS])
    write_text(run_dir / "config.yaml", "name: tiny\nruns: 2\nclassifiers: [cnn, sklearn-svm]\n")
    write_tsv(run_dir / "caps" / "excluded.tsv", pd.DataFrame({"participant_id": ["sub-bad"], "session_id": ["ses-M000"],
                                                               "status": ["qc"], "reason": ["NCC 0.2 < 0.5"]}))
    quality = pd.DataFrame({"sampler": ["prior", "prior"], "diagnosis": list(LABELS), "diversity": [0.1, 0.9],
                            "warnings": ["collapsed pool: diversity 0.10 < 0.5", ""]})
    report = write_report(run_dir, "tiny", metrics, pd.DataFrame(), 0, quality,
                          StudyImages(data, pools, LABELS, mask))
    return run_dir, report


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return _write_study(tmp_path_factory.mktemp("study"))


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_every_figure_is_an_embedded_png_and_nothing_is_fetched(study):
    run_dir, _ = study
    page = (run_dir / "report.html").read_text()
    parser = _Images()
    parser.feed(page)
    assert len(parser.sources) == 4  # accuracy, learning curves, synthetic vs nearest real, QC montage
    for source in parser.sources:
        assert source.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1], validate=True)))
        image.load()
        assert image.format == "PNG" and min(image.size) > 50
    assert not re.search(r"""(src|href)=["'](https?:|//|file:)""", page) and "<link" not in page
    assert (run_dir / "report.html").stat().st_size < 3_000_000


def test_report_leads_with_the_sanity_checks_and_shows_config_and_versions(study):
    run_dir, report = study
    page = (run_dir / "report.html").read_text()
    checks = {w.check for w in report["sanity"]}
    assert {"constant predictions", "QC exclusions", "synthetic pool", "small test set",
            "small generator training set"} <= checks
    assert page.index('id="sanity-checks"') < page.index('id="balanced-accuracy"') < page.index('id="learning-curves"')
    assert "sub-bad ses-M000 (NCC 0.2 &lt; 0.5)" in page and "cnn / real (test)" in page
    assert "name: tiny" in page and all(package in page for package in ("python", "torch", "monai", "SimpleITK"))
    summary = (run_dir / "summary.md").read_text()
    assert summary.index("## Sanity checks") < summary.index("## Test set") and "collapsed pool" in summary
    sanity = pd.read_csv(run_dir / "sanity.tsv", sep="\t")
    assert len(sanity) == len(report["sanity"]) and set(sanity["check"]) == checks
    for figure in ("balanced_accuracy", "learning_curves", "synthetic_vs_real", "qc_montage"):
        assert (run_dir / "figures" / f"{figure}.png").is_file()


def test_without_preprocessing_the_montage_says_it_has_no_outline(tmp_path):
    run_dir, _ = _write_study(tmp_path, outline=False)
    page = (run_dir / "report.html").read_text()
    assert "Preprocessing is disabled: the images are shown as read, without a template outline" in page
    assert "brain mask on the study grid" not in page


def test_nearest_real_finds_the_copied_image():
    real = torch.rand(7, 1, *SHAPE, generator=torch.Generator().manual_seed(2))
    index, distance = nearest_real(real[[5, 1]] + 0.001, real, batch=3)  # the neighbours lie in different batches
    assert list(index) == [5, 1] and (distance < 0.1).all()


def test_accuracy_intervals_match_the_runs_and_resample_subjects():
    rows = []
    for run, correct in enumerate(([1, 1, 1, 0, 1, 1], [1, 0, 1, 1, 1, 1])):
        truth = ["CN", "CN", "CN", "AD", "AD", "AD"]
        flip = {"CN": "AD", "AD": "CN"}
        rows += [{"classifier": "c", "condition": "real", "test_set": "test", "run": run, "participant_id": f"s{i}",
                  "session_id": "ses-M000", "true_label": t, "predicted_label": t if ok else flip[t]}
                 for i, (t, ok) in enumerate(zip(truth, correct))]
    row = accuracy_intervals(pd.DataFrame(rows)).iloc[0]
    assert np.isclose(row["balanced_accuracy"], (5 / 6 + 5 / 6) / 2) and row["runs"] == 2 and row["per_label"] == 3
    assert row["ci_low"] < row["balanced_accuracy"] <= row["ci_high"] <= 1  # resampled subjects spread it


def test_template_outline_is_the_brain_on_the_study_grid():
    assert template_outline(PreprocessingSection(enabled=False, size=(16, 20, 16))) is None
    outline = template_outline(PreprocessingSection(size=(16, 20, 16)))
    assert outline.shape == (16, 20, 16) and outline.dtype == bool
    assert 0.2 < outline.mean() < 0.8 and outline[8, 10, 8] and not outline[0, 0, 0]


def _chromium(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                           *arguments], capture_output=True, text=True, timeout=180)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("MEDAUG_REQUIRE_CHROMIUM"),
                    reason="no chromium on PATH (apt-get install chromium) to render report.html")
def test_every_figure_loads_in_headless_chromium(study, tmp_path):
    assert CHROMIUM is not None, ".ci/run installed chromium, but it is not on PATH"
    run_dir, _ = study
    page = (run_dir / "report.html").resolve().as_uri()
    dom = _chromium("--dump-dom", page).stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    loaded = int(re.search(r'data-figures-loaded="(\d+)"', body).group(1))
    total = int(re.search(r'data-figures-total="(\d+)"', body).group(1))
    assert loaded == total > 0
    screenshot = tmp_path / "report.png"
    _chromium(f"--screenshot={screenshot}", "--window-size=1200,3000", page)
    image = Image.open(screenshot)
    assert image.size == (1200, 3000)
    pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # text and figures, not a blank page
