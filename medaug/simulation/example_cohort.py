"""Simulated BIDS cohorts with known anatomical effects, built offline from MNI152 anatomy.

Forward model of one image (voxel v of the scan, scanner mm s, subject mm y, template mm p):

    s = A v                        acquisition grid (site orientation, FOV, resolution)
    y = R s + t                    rigid head pose in the scanner (±10°, ±10 mm)
    p₀ = y / κ                     head size κ (sex-dependent)
    p₁ = p₀ + u(p₀)                inter-subject variability, u = exp(v) − id (diffeomorphic)
    p₂ = Φ_k(p₁)                   ventricular enlargement (age + AD severity), invertible
    I(v) = gain · b(v) · [T(p₂) + a(p₂) gm(p₂)(μ_csf − μ_gm)]^γ + Rician noise

with a = medial-temporal grey-matter loss (AD severity), b a smooth bias field and γ the site's
contrast. The similarity s ↦ (R s + t)/κ is the ground-truth scanner-to-template transform.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import ClassVar

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from medaug import __version__
from medaug.configuration import Config
from medaug.errors import ConfigError, InputDataError, OutputExistsError
from medaug.io import write_json, write_nifti, write_text, write_tsv
from medaug.output_folder import check_output, claim_output
from medaug.provenance import read_json_object
from medaug.run_folder import FolderLock
from medaug.simulation.anatomy import TEMPLATE_SPACE, TemplateAnatomy, install_template_anatomy, load_template_anatomy
from medaug.simulation.primitives import (
    acquisition_grid,
    exponentiate_velocity,
    grid_points,
    radial_expansion,
    random_velocity_field,
    rician_noise,
    rotation_matrix,
    sample_volume,
    smooth_bias_field,
)
from medaug.workers import check_main_guarded

logger = logging.getLogger(__name__)

BIDS_VERSION = "1.10.0"
CONFIG_FILE = Path("code") / "medaug_example_cohort.json"
GROUND_TRUTH_DIR = Path("derivatives") / "ground_truth"


@dataclass(frozen=True)
class LabelProfile:
    """Demographics and disease course of one diagnostic label (ADNI-like)."""

    age_mean: float
    age_std: float
    female_fraction: float
    severity_range: tuple[float, float]  # baseline AD severity, uniform
    severity_rate: tuple[float, float]  # severity increase per year: mean, std


LABEL_PROFILES = {
    "CN": LabelProfile(73.0, 6.0, 0.52, (0.0, 0.0), (0.0, 0.0)),
    "MCI": LabelProfile(73.0, 7.5, 0.42, (0.1, 0.4), (0.06, 0.03)),
    "AD": LabelProfile(75.0, 8.0, 0.45, (0.4, 1.0), (0.15, 0.05)),
}


@dataclass(frozen=True)
class Site:
    """A scanner: its voxel orientation, contrast (gamma on [0, 1] intensities) and gain."""

    name: str
    manufacturer: str
    field_strength: float
    orientation: str
    contrast_gamma: float
    gain: float


SITES = (
    Site("S01", "Siemens", 3.0, "PIR", 1.00, 150.0),
    Site("S02", "GE", 3.0, "LAS", 0.85, 180.0),
    Site("S03", "Philips", 1.5, "RAS", 1.15, 120.0),
    Site("S04", "Siemens", 1.5, "LPI", 0.95, 160.0),
)

# Disease model constants (dimensionless strengths, see the module docstring).
VENTRICLE_AGE_RATE = (0.004, 0.001)  # per year above 40: mean, std over subjects
VENTRICLE_AD_STRENGTH = 0.3  # expansion per unit of AD severity × effect
MTL_LOSS_STRENGTH = 0.5  # fraction of medial-temporal GM turned to CSF per unit severity × effect
MAX_EXPANSION = 0.6
MAX_GM_LOSS = 0.9

RESOLUTION_RANGE_MM = (0.5, 10.0)  # voxel sizes of a usable simulated grid over the ~200 mm field of view
_SESSION_RE = re.compile(r"^M(\d{2,3})$")


@dataclass
class ExampleCohortConfig(Config):
    """Parameters of a simulated cohort; round-trips through :meth:`to_dict` / :meth:`from_dict`."""

    section: ClassVar[str] = 'example-cohort'

    subjects_per_label: int = 8
    labels: tuple[str, ...] = ("CN", "AD")
    resolution_mm: float = 1.0
    sessions: tuple[str, ...] = ("M000",)
    missing_rate: float = 0.0
    effect: float = 1.0
    seed: int = 0
    deformation_rms_mm: float = 3.0
    field_of_view_mm: tuple[float, float, float] = (188.0, 224.0, 200.0)
    subject_prefix: str = "SIM"  # participant ids sub-<prefix>0001…: another prefix gives a cohort of other subjects

    def validate(self) -> None:
        if not re.fullmatch(r"[A-Za-z]+", self.subject_prefix):
            raise ConfigError(f"subject_prefix must be letters only (a BIDS label), got {self.subject_prefix!r}")
        if self.subjects_per_label < 1:
            raise ConfigError(f"subjects_per_label must be a positive integer, got {self.subjects_per_label!r}")
        unknown = [label for label in self.labels if label not in LABEL_PROFILES]
        if unknown or not self.labels:
            raise ConfigError(f"unknown diagnosis label(s) {unknown or self.labels!r}; "
                              f"choose among {', '.join(LABEL_PROFILES)}")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"labels must be distinct, got {','.join(self.labels)}")
        low, high = RESOLUTION_RANGE_MM
        if not low <= self.resolution_mm <= high:
            raise ConfigError(f"resolution must be in [{low:g}, {high:g}] mm, got {self.resolution_mm:g}: finer grids "
                              "do not fit in memory, coarser ones have under 20 voxels across the head")
        if not self.sessions:
            raise ConfigError("at least one session is needed, for example M000")
        bad = [s for s in self.sessions if not _SESSION_RE.match(s)]
        if bad:
            raise ConfigError(f"session labels must look like M000 or M12 (months), got {bad}")
        months = [self.session_months(s) for s in self.sessions]
        if months != sorted(months) or len(set(months)) != len(months):
            raise ConfigError(f"sessions must be distinct and in increasing order, got {self.sessions}")
        if not 0.0 <= self.missing_rate < 1.0:
            raise ConfigError(f"missing_rate must be in [0, 1), got {self.missing_rate}")
        if self.effect < 0:
            raise ConfigError(f"effect must be ≥ 0 (0 = no AD effect), got {self.effect}")
        if self.deformation_rms_mm < 0 or min(self.field_of_view_mm) <= 0:
            raise ConfigError("deformation_rms_mm must be ≥ 0 and field_of_view_mm > 0")

    @staticmethod
    def session_months(session: str) -> int:
        return int(_SESSION_RE.match(session).group(1))


@dataclass
class SubjectDraw:
    """Random, per-subject quantities of the simulation."""

    participant_id: str
    diagnosis: str
    sex: str
    age_bl: float
    site: Site
    head_scale: float
    severity_bl: float
    severity_rate: float
    ventricle_age_rate: float
    seed: np.random.SeedSequence
    present_sessions: list[str] = field(default_factory=list)


def draw_subjects(config: ExampleCohortConfig) -> list[SubjectDraw]:
    """All subjects of the cohort, deterministic in ``config.seed``."""
    root = np.random.SeedSequence(config.seed)
    n_total = config.subjects_per_label * len(config.labels)
    id_rng = np.random.default_rng(root.spawn(1)[0])
    numbers = id_rng.permutation(n_total) + 1  # identifiers do not reveal the diagnosis
    subject_seeds = root.spawn(n_total)
    subjects = []
    for index, seed in enumerate(subject_seeds):
        label = config.labels[index // config.subjects_per_label]
        profile = LABEL_PROFILES[label]
        rng = np.random.default_rng(seed)
        sex = "F" if rng.random() < profile.female_fraction else "M"
        age = float(np.clip(rng.normal(profile.age_mean, profile.age_std), 55.0, 92.0))
        site = SITES[rng.integers(len(SITES))]
        scale = float(rng.normal(1.04 if sex == "M" else 0.96, 0.03))
        severity = float(rng.uniform(*profile.severity_range))
        rate = float(max(rng.normal(*profile.severity_rate), 0.0)) if profile.severity_rate[0] else 0.0
        vent_rate = float(max(rng.normal(*VENTRICLE_AGE_RATE), 0.001))
        present = [config.sessions[0]] + [s for s in config.sessions[1:] if rng.random() >= config.missing_rate]
        subjects.append(SubjectDraw(f"{config.subject_prefix}{numbers[index]:04d}", label, sex, round(age, 1), site, scale,
                                    severity, rate, vent_rate, seed, present))
    return subjects


@dataclass
class SessionTruth:
    """Ground truth of one simulated image."""

    participant_id: str
    session_id: str
    diagnosis: str
    age: float
    severity: float
    ventricle_expansion: float
    mtl_grey_matter_loss: float
    ventricle_volume_ml: float
    mtl_grey_matter_ml: float
    head_scale: float
    rotation_deg: list[float]
    translation_mm: list[float]
    scanner_to_template: list[list[float]]


def _disease_state(subject: SubjectDraw, years: float, effect: float) -> tuple[float, float, float]:
    """AD severity, ventricle expansion strength k and peak MTL GM loss at ``years`` after baseline."""
    severity = subject.severity_bl + subject.severity_rate * years
    age = subject.age_bl + years
    expansion = subject.ventricle_age_rate * max(age - 40.0, 0.0) + effect * VENTRICLE_AD_STRENGTH * severity
    gm_loss = effect * MTL_LOSS_STRENGTH * severity
    return severity, min(expansion, MAX_EXPANSION), min(gm_loss, MAX_GM_LOSS)


def simulate_session(anatomy: TemplateAnatomy, subject: SubjectDraw, session: str, years: float,
                     displacement: torch.Tensor, displacement_affine: np.ndarray,
                     config: ExampleCohortConfig, rng: np.random.Generator) -> tuple[nib.Nifti1Image, SessionTruth]:
    """One T1w scan of ``subject`` ``years`` after baseline, with its ground truth."""
    severity, expansion, gm_loss = _disease_state(subject, years, config.effect)
    angles = rng.uniform(-10.0, 10.0, 3)
    translation = rng.uniform(-10.0, 10.0, 3) + np.array([0.0, -17.0, 5.0]) * subject.head_scale
    rotation = rotation_matrix(angles)

    scanner_to_template = np.eye(4)
    scanner_to_template[:3, :3] = rotation / subject.head_scale
    scanner_to_template[:3, 3] = translation / subject.head_scale

    shape, grid_affine = acquisition_grid(subject.site.orientation, config.resolution_mm, config.field_of_view_mm)
    template_mm = grid_points(shape, scanner_to_template @ grid_affine)
    template_mm += sample_volume(displacement, displacement_affine, template_mm, "border")
    template_mm = radial_expansion(template_mm, anatomy.ventricle_centre, 1.5 * anatomy.ventricle_spread, expansion)
    head, ventricles, mtl_grey, region_grey, region_mtl_grey = sample_volume(
        anatomy.sampled, anatomy.affine, template_mm).T
    del template_mm
    head += gm_loss * (anatomy.csf_intensity - anatomy.grey_matter_intensity) * mtl_grey

    gain = subject.site.gain * rng.uniform(0.9, 1.1)
    signal = head.clamp_(0.0, 1.0).pow_(subject.site.contrast_gamma).view(shape)
    signal = gain * signal * smooth_bias_field(rng, shape, log_std=0.12)
    noisy = rician_noise(rng, signal, sigma=gain * rng.uniform(0.015, 0.03))
    data = np.clip(np.rint(noisy.numpy()), 0, np.iinfo(np.int16).max).astype(np.int16)

    image = nib.Nifti1Image(data, grid_affine)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(grid_affine, code=1)
    image.set_sform(grid_affine, code=1)

    voxel_ml = config.resolution_mm**3 / 1000.0
    truth = SessionTruth(
        participant_id=f"sub-{subject.participant_id}", session_id=f"ses-{session}",
        diagnosis=subject.diagnosis, age=round(subject.age_bl + years, 2), severity=round(severity, 4),
        ventricle_expansion=round(expansion, 4), mtl_grey_matter_loss=round(gm_loss, 4),
        ventricle_volume_ml=round(float(ventricles.double().sum()) * voxel_ml, 3),
        mtl_grey_matter_ml=round(float((region_grey - gm_loss * region_mtl_grey).double().sum()) * voxel_ml, 3),
        head_scale=round(subject.head_scale, 4), rotation_deg=[round(float(a), 4) for a in angles],
        translation_mm=[round(float(t), 4) for t in translation],
        scanner_to_template=scanner_to_template.round(8).tolist(),
    )
    return image, truth


def _anat_stem(participant: str, session: str) -> str:
    return f"sub-{participant}_ses-{session}"


def _subject_truth_path(out_dir: Path, participant: str) -> Path:
    return out_dir / GROUND_TRUTH_DIR / f"sub-{participant}" / f"sub-{participant}_groundtruth.json"


def simulate_subject(subject: SubjectDraw, config: ExampleCohortConfig, out_dir: Path) -> list[dict]:
    """Write every present session of one subject; the ground-truth JSON is written last."""
    torch.set_num_threads(1)
    anatomy = load_template_anatomy()
    seeds = subject.seed.spawn(1 + len(config.sessions))
    rng = np.random.default_rng(seeds[0])
    coarse_spacing = 8.0
    coarse_shape = tuple(int(np.ceil(n / coarse_spacing)) + 1 for n in anatomy.shape)
    coarse_affine = anatomy.affine.copy()
    coarse_affine[:3, :3] *= coarse_spacing
    velocity = random_velocity_field(rng, coarse_shape, smoothing_voxels=2.0, rms_mm=config.deformation_rms_mm)
    displacement = exponentiate_velocity(velocity, coarse_affine)

    records = []
    for index, session in enumerate(config.sessions):
        if session not in subject.present_sessions:
            continue
        years = (config.session_months(session) - config.session_months(config.sessions[0])) / 12.0
        image, truth = simulate_session(anatomy, subject, session, years, displacement, coarse_affine,
                                        config, np.random.default_rng(seeds[1 + index]))
        stem = _anat_stem(subject.participant_id, session)
        anat = out_dir / f"sub-{subject.participant_id}" / f"ses-{session}" / "anat"
        write_nifti(anat / f"{stem}_T1w.nii.gz", image)
        write_json(anat / f"{stem}_T1w.json", {
            "Manufacturer": subject.site.manufacturer,
            "MagneticFieldStrength": subject.site.field_strength,
            "InstitutionName": f"Simulated site {subject.site.name}",
            "MRAcquisitionType": "3D",
        })
        xfm_dir = out_dir / GROUND_TRUTH_DIR / f"sub-{subject.participant_id}" / f"ses-{session}" / "anat"
        matrix = "\n".join(" ".join(f"{v:.8f}" for v in row) for row in truth.scanner_to_template)
        write_text(xfm_dir / f"{stem}_from-scanner_to-{TEMPLATE_SPACE}_mode-image_xfm.txt", matrix + "\n")
        records.append(dataclasses.asdict(truth) | {"sex": subject.sex, "site": subject.site.name,
                                                   "age_bl": subject.age_bl})
    write_json(_subject_truth_path(out_dir, subject.participant_id), records)
    return records


def _check_output(out_dir: Path, config: ExampleCohortConfig) -> None:
    """Refuse a folder that holds anything but an earlier build of the same config (reads only)."""
    check_output(out_dir, "example-cohort", marker=str(CONFIG_FILE))
    config_path = out_dir / CONFIG_FILE
    if config_path.is_file():
        previous = read_json_object(config_path, "choose a new output folder")
        # options added since a cohort was built hold their defaults in it
        if {**ExampleCohortConfig().to_dict(), **(previous.get("config") or {})} != config.to_dict():
            raise OutputExistsError(f"{out_dir} holds an example cohort built with other parameters "
                                    f"({config_path}); choose a new output folder")
        logger.info("resuming the example cohort in %s", out_dir)


def _write_metadata(out_dir: Path, config: ExampleCohortConfig, subjects: list[SubjectDraw],
                    truth: pd.DataFrame) -> None:
    write_json(out_dir / "dataset_description.json", {
        "Name": "medaug simulated cohort (MNI152 anatomy)",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "raw",
        "License": "CC0",
        "Authors": ["medaug"],
        "GeneratedBy": [{"Name": "medaug", "Version": __version__,
                         "Description": "example-cohort simulation from the nilearn MNI152 2009a templates"}],
    })
    labels = ", ".join(config.labels)
    write_text(out_dir / "README", (
        "# Simulated T1w cohort\n\n"
        f"Built by medaug {__version__} (`medaug example-cohort`) from the MNI152 2009a anatomy shipped "
        f"with nilearn. Every image is SIMULATED: {config.subjects_per_label} subjects per label ({labels}), "
        f"sessions {', '.join(config.sessions)}, {config.resolution_mm} mm, AD effect {config.effect}, "
        f"seed {config.seed}.\n\nGround truth (pose, AD severity, ventricle volume) is in "
        "derivatives/ground_truth/; the exact parameters are in code/medaug_example_cohort.json.\n"))
    participants = pd.DataFrame([{
        "participant_id": f"sub-{s.participant_id}", "sex": s.sex, "age_bl": s.age_bl,
        "diagnosis_bl": s.diagnosis, "site": s.site.name} for s in subjects]).sort_values("participant_id")
    write_tsv(out_dir / "participants.tsv", participants)
    write_json(out_dir / "participants.json", {
        "sex": {"Description": "sex of the participant", "Levels": {"M": "male", "F": "female"}},
        "age_bl": {"Description": "age at the baseline session", "Units": "year"},
        "diagnosis_bl": {"Description": "diagnosis at baseline",
                         "Levels": {k: v for k, v in _DIAGNOSIS_NAMES.items() if k in config.labels}},
        "site": {"Description": "simulated acquisition site"},
    })
    write_json(out_dir / "sessions.json", {
        "age": {"Description": "age at the session", "Units": "year"},
        "diagnosis": {"Description": "diagnosis at the session",
                      "Levels": {k: v for k, v in _DIAGNOSIS_NAMES.items() if k in config.labels}},
    })
    for participant, rows in truth.groupby("participant_id"):
        sessions = rows[["session_id", "age", "diagnosis"]].sort_values("session_id")
        write_tsv(out_dir / participant / f"{participant}_sessions.tsv", sessions)

    gt = out_dir / GROUND_TRUTH_DIR
    write_json(gt / "dataset_description.json", {
        "Name": "medaug simulated cohort: ground truth",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "medaug", "Version": __version__}],
        "SourceDatasets": [{"URL": "../../"}],
    })
    write_text(gt / ".bidsignore", "ground_truth.tsv\nground_truth.json\nsub-*/sub-*_groundtruth.json\n")
    flat = truth.drop(columns=["scanner_to_template", "rotation_deg", "translation_mm"])
    write_tsv(gt / "ground_truth.tsv", flat)
    write_json(gt / "ground_truth.json", _GROUND_TRUTH_COLUMNS)


_DIAGNOSIS_NAMES = {"CN": "cognitively normal", "MCI": "mild cognitive impairment", "AD": "Alzheimer's disease"}

_GROUND_TRUTH_COLUMNS = {
    "severity": "AD severity (0 for CN); grows linearly with time at a per-subject rate",
    "ventricle_expansion": "strength k of the ventricular enlargement map (age + AD)",
    "mtl_grey_matter_loss": "peak fraction of medial-temporal grey matter replaced by CSF",
    "ventricle_volume_ml": "lateral-ventricle volume of the simulated head, mL",
    "mtl_grey_matter_ml": "grey-matter volume in the medial-temporal region, mL",
    "head_scale": "global head-size factor (sex-dependent)",
    "xfm": "per image, sub-*/ses-*/anat/*_xfm.txt: 4×4 scanner mm → template mm similarity "
           f"({TEMPLATE_SPACE}), exact up to the smooth inter-subject deformation",
}


def build_example_cohort(out_dir: str | os.PathLike, config: ExampleCohortConfig | None = None,
                         jobs: int = 1) -> pd.DataFrame:
    """Simulate a BIDS cohort into ``out_dir`` and return its ground-truth table (one row per image).

    Re-running with the same config resumes: finished subjects are kept, the others are built.
    """
    config = config or ExampleCohortConfig()
    if jobs < 1:
        raise ConfigError(f"jobs must be ≥ 1, got {jobs}")
    if jobs > 1:
        check_main_guarded(f"build_example_cohort(jobs={jobs})")
    out_dir = Path(out_dir)
    _check_output(out_dir, config)
    with FolderLock(out_dir, "medaug example-cohort"):  # two builds of one folder would mix their subjects
        claim_output(out_dir, "example-cohort", marker=str(CONFIG_FILE), record={"config": config.to_dict()})
        return _build(out_dir, config, jobs)


def _build(out_dir: Path, config: ExampleCohortConfig, jobs: int) -> pd.DataFrame:
    subjects = draw_subjects(config)
    records: dict[str, list[dict]] = {}
    todo = []
    for subject in subjects:
        path = _subject_truth_path(out_dir, subject.participant_id)
        if path.exists():
            records[subject.participant_id] = json.loads(path.read_text())
        else:
            todo.append(subject)
    logger.info("simulating %d subject(s) (%d already done)", len(todo), len(records))
    progress = tqdm(total=len(todo), desc="subjects", unit="subject", disable=not todo)
    if jobs == 1:
        for subject in todo:
            records[subject.participant_id] = simulate_subject(subject, config, out_dir)
            progress.update()
    else:
        anatomy = load_template_anatomy()
        anatomy.sampled.share_memory_()  # workers map the parent's volumes instead of rebuilding them
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                                 initializer=install_template_anatomy, initargs=(anatomy,)) as pool:
            futures = {pool.submit(simulate_subject, s, config, out_dir): s for s in todo}
            for future, subject in futures.items():
                records[subject.participant_id] = future.result()
                progress.update()
    progress.close()
    truth = pd.DataFrame([row for s in subjects for row in records[s.participant_id]])
    truth = truth.sort_values(["participant_id", "session_id"]).reset_index(drop=True)
    _write_metadata(out_dir, config, subjects, truth)
    return truth


def summarize_cohort(truth: pd.DataFrame) -> str:
    """Per-label table: subjects, images, sex counts, baseline age and ventricle volume (mean ± std)."""
    baseline = truth.sort_values("age").groupby("participant_id").head(1)
    lines = [f"{'label':<6}{'subjects':>9}{'images':>8}{'F/M':>8}{'age_bl':>15}{'ventricles_mL':>18}{'MTL_GM_mL':>15}"]
    for label, rows in baseline.groupby("diagnosis", sort=False):
        images = truth[truth["diagnosis"] == label]
        sex = f"{(rows['sex'] == 'F').sum()}/{(rows['sex'] == 'M').sum()}"
        lines.append(
            f"{label:<6}{len(rows):>9}{len(images):>8}{sex:>8}"
            f"{rows['age'].mean():>9.1f} ± {rows['age'].std():<4.1f}"
            f"{rows['ventricle_volume_ml'].mean():>11.1f} ± {rows['ventricle_volume_ml'].std():<4.1f}"
            f"{rows['mtl_grey_matter_ml'].mean():>8.1f} ± {rows['mtl_grey_matter_ml'].std():<4.1f}")
    return "\n".join(lines)


def read_ground_truth(bids_dir: str | os.PathLike) -> pd.DataFrame:
    """The ground-truth table of a simulated cohort (one row per image)."""
    path = Path(bids_dir) / GROUND_TRUTH_DIR / "ground_truth.tsv"
    if not path.exists():
        raise InputDataError(f"{path} not found: {bids_dir} is not a cohort made by `medaug example-cohort`")
    return pd.read_csv(path, sep="\t")


def read_scanner_to_template(bids_dir: str | os.PathLike, participant_id: str, session_id: str) -> np.ndarray:
    """The recorded 4×4 scanner-mm → template-mm similarity of one simulated image."""
    stem = f"{participant_id}_{session_id}"
    path = (Path(bids_dir) / GROUND_TRUTH_DIR / participant_id / session_id / "anat"
            / f"{stem}_from-scanner_to-{TEMPLATE_SPACE}_mode-image_xfm.txt")
    if not path.exists():
        raise InputDataError(f"ground-truth transform {path} not found")
    return np.loadtxt(path)


def t1w_path(bids_dir: str | os.PathLike, participant_id: str, session_id: str) -> Path:
    return Path(bids_dir) / participant_id / session_id / "anat" / f"{participant_id}_{session_id}_T1w.nii.gz"
