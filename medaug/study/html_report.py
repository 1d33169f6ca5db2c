"""``report.html``: one self-contained page per study (figures as base64 PNG data URIs, inline
CSS, no network), and the figures only it shows: learning curves, synthetic images beside their
nearest real training image, and a preprocessing QC montage with the template's brain outline.

The page's inline script writes ``data-figures-loaded`` / ``data-figures-total`` (and
``data-page-height``) on ``<body>`` once the window has loaded, so a headless browser can tell
whether every figure decoded (``benchmarks/render_report.py``).
"""

from __future__ import annotations

import base64
import html
import io
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from medaug.data.volumes import Volumes  # noqa: E402
from medaug.preprocessing.pipeline import output_transforms  # noqa: E402
from medaug.preprocessing.registration import resample_to_grid  # noqa: E402
from medaug.preprocessing.sitk_image import to_sitk  # noqa: E402
from medaug.preprocessing.template import CLINICA_CROP_GRID, load_registration_template  # noqa: E402
from medaug.study.config import PreprocessingSection  # noqa: E402
from medaug.study.data import StudyData  # noqa: E402
from medaug.study.sanity import SanityWarning  # noqa: E402

PACKAGES = ("torch", "medaug", "numpy", "monai", "SimpleITK")
DPI = 90
MONTAGE_LIMIT = 80   # subjects shown in the QC montage
MONTAGE_COLUMNS = 10
EXAMPLES = 4         # synthetic images per sampler and class
OPEN_FINDINGS = 4    # a check with more findings starts collapsed on the page


@dataclass(frozen=True)
class StudyImages:
    """What the image figures show: the study's image sets, the synthetic pools (sampler → class
    code → images), class names in code order, and the template's brain mask on the image grid
    (``None``: preprocessing was disabled, the images are shown as read), and the saliency
    folders whose class-mean overlays the page shows."""

    data: StudyData
    pools: dict[str, dict[int, Volumes]] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    outline: np.ndarray | None = None
    saliency: tuple[Path, ...] = ()  # interpret/<classifier>/<condition>/<method>/ folders to show


def template_on_study_grid(preprocessing: PreprocessingSection, brain_mask: bool = False) -> np.ndarray:
    """The registration template (its T1w image in [0, 1], or its brain mask) as the study images
    see it: on the Clinica crop grid, resized to ``preprocessing.size`` like the images."""
    t1_linear = preprocessing.t1_linear()
    template = load_registration_template(t1_linear.template, space=t1_linear.template_space)
    volume = template.brain_mask if brain_mask else template.voxels
    grid = resample_to_grid(to_sitk(np.asarray(volume, dtype=np.float32), template.affine), np.eye(4),
                            CLINICA_CROP_GRID)
    return np.asarray(output_transforms(tuple(preprocessing.size))({"image": torch.from_numpy(grid)[None]})["image"][0])


def template_outline(preprocessing: PreprocessingSection) -> np.ndarray | None:
    """The template's brain mask on the study grid (bool, ``size``); ``None`` when preprocessing is disabled."""
    return template_on_study_grid(preprocessing, brain_mask=True) > 0.5 if preprocessing.enabled else None


def png_bytes(figure) -> bytes:
    """The figure as PNG bytes (closed afterwards)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=DPI, bbox_inches="tight", format="png")
    plt.close(figure)
    return buffer.getvalue()


def _axial(volume: torch.Tensor) -> np.ndarray:
    """The middle axial slice of a (1, X, Y, Z) image, rows = Y (for ``origin="lower"``)."""
    array = np.asarray(volume[0], dtype=np.float32)
    return array[:, :, array.shape[2] // 2].T


def learning_curves_figure(logs: pd.DataFrame, colours: dict[str, str]):
    """Per classifier: train loss and validation balanced accuracy per epoch, mean over runs per
    condition (``logs``: classifier, condition, run, epoch, train_loss, val_balanced_accuracy)."""
    if logs.empty:
        return None
    classifiers = list(dict.fromkeys(logs["classifier"]))
    figure, axes = plt.subplots(len(classifiers), 2, figsize=(11, 2.8 * len(classifiers)), squeeze=False)
    styles = ("-", "--", ":", "-.")
    for row, classifier in zip(axes, classifiers):
        used: dict[str, int] = {}
        for condition, group in logs[logs["classifier"] == classifier].groupby("condition", sort=False):
            mean = group.groupby("epoch")[["train_loss", "val_balanced_accuracy"]].mean()
            colour = colours.get(condition, "k")
            style = styles[used.get(colour, 0) % len(styles)]
            used[colour] = used.get(colour, 0) + 1
            runs = group["run"].nunique()
            row[0].plot(mean.index, mean["train_loss"], style, color=colour)
            row[1].plot(mean.index, 100 * mean["val_balanced_accuracy"], style, color=colour,
                        label=f"{condition} ({runs} runs)")
        row[0].set(title=f"{classifier}: train loss", xlabel="epoch", ylabel="loss (mean over runs)")
        row[1].set(title=f"{classifier}: validation balanced accuracy", xlabel="epoch", ylabel="%", ylim=(0, 100))
        row[1].axhline(50, color="k", lw=0.5, ls=":")
        row[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    figure.tight_layout()
    return figure


def generator_curves_figure(logs: dict[str, pd.DataFrame]):
    """Per generator (``logs``: label → its ``training_log.csv``): training and validation loss per
    epoch, the kept epoch marked. A validation loss that rises while the training loss falls is the
    generator overfitting its class."""
    if not logs:
        return None
    figure, axes = plt.subplots(1, len(logs), figsize=(5.5 * len(logs), 3.2), squeeze=False)
    for axis, (label, log) in zip(axes[0], logs.items()):
        axis.plot(log["epoch"], log["train_loss"], color="C0", label="training loss")
        if "val_loss" in log:
            axis.plot(log["epoch"], log["val_loss"], color="C3", label="validation loss")
        selected = "best_train_loss" if "best_train_loss" in log else "best_val_loss"
        kept = log["epoch"][log[selected.removeprefix("best_")].idxmin()]
        axis.axvline(kept, color="k", lw=0.7, ls=":", label=f"kept (epoch {kept}, {selected.removeprefix('best_')})")
        low, high = np.nanpercentile(log[[c for c in ("train_loss", "val_loss") if c in log]].to_numpy(), [0, 90])
        axis.set(title=f"{label} generator", xlabel="epoch", ylabel="loss per image", ylim=(low - 0.05 * (high - low), high))
        axis.legend(fontsize=7, frameon=False)
    figure.tight_layout()
    return figure


def nearest_real(synthetic: torch.Tensor, real, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Index of and L2 distance (whole volume) to each synthetic image's nearest ``real`` image;
    the real images stream ``batch`` at a time."""
    flat = synthetic.flatten(1).double()
    best = torch.full((len(synthetic),), float("inf"), dtype=torch.float64)
    index = torch.zeros(len(synthetic), dtype=torch.long)
    for start, part in zip(range(0, len(real), batch), Volumes.of(real).batches(batch)):
        distance, where = torch.cdist(flat, part.flatten(1).double()).min(1)
        closer = distance < best
        best[closer], index[closer] = distance[closer], where[closer] + start
    return index.numpy(), best.numpy()


def nearest_real_figure(images: StudyImages, examples: int = EXAMPLES):
    """Per sampler and class: ``examples`` synthetic images (middle axial slice), each beside its
    nearest training image of that class (L2 over the whole volume)."""
    if not images.pools:
        return None
    train = images.data.train
    rows = [(sampler, code) for sampler in images.pools for code in range(len(images.labels))]
    figure, axes = plt.subplots(len(rows), 2 * examples, figsize=(1.25 * 2 * examples, 1.5 * len(rows)), squeeze=False)
    for axis_row, (sampler, code) in zip(axes, rows):
        pool = Volumes.of(images.pools[sampler][code])
        synthetic = pool.batch(np.arange(min(examples, len(pool)))).float()
        real = Volumes.of(train.images).take(train.labels == code)
        index, distance = nearest_real(synthetic, real)
        closest = real.batch(index)
        for axis in axis_row:
            axis.axis("off")
        for i in range(len(synthetic)):
            left, right = axis_row[2 * i], axis_row[2 * i + 1]
            left.imshow(_axial(synthetic[i]), cmap="gray", origin="lower", vmin=0, vmax=1)
            right.imshow(_axial(closest[i]), cmap="gray", origin="lower", vmin=0, vmax=1)
            left.set_title(f"synthetic {i + 1}", fontsize=7)
            right.set_title(f"nearest real, L2 {distance[i]:.1f}", fontsize=7)
        axis_row[0].text(-0.15, 0.5, f"{sampler}\n{images.labels[code]}", transform=axis_row[0].transAxes,
                         ha="right", va="center", fontsize=8)
    return figure


def _montage_images(data: StudyData, limit: int) -> tuple[list[tuple[str, str, torch.Tensor]], int]:
    """One image (the first session) per subject of every image set, at most ``limit``; and the
    number of subjects."""
    sets = {"train": data.train, "validation": data.validation, "test": data.test, **data.independent}
    chosen = []
    for name, image_set in sets.items():
        first = image_set.rows.reset_index(drop=True).drop_duplicates("participant_id")["participant_id"]
        chosen += [(name, subject, image_set, index) for index, subject in first.items()]
    shown = [(name, subject, Volumes.of(image_set.images)[index]) for name, subject, image_set, index in chosen[:limit]]
    return shown, len(chosen)


def qc_montage_figure(images: StudyImages, limit: int = MONTAGE_LIMIT):
    """The middle axial slice of one image per subject, with the template's brain outline (red)
    where preprocessing registered the images."""
    shown, total = _montage_images(images.data, limit)
    columns = min(MONTAGE_COLUMNS, len(shown))
    lines = -(-len(shown) // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(1.25 * columns, 1.6 * lines), squeeze=False)
    outline = None if images.outline is None else images.outline[:, :, images.outline.shape[2] // 2].T
    for axis in axes.flat:
        axis.axis("off")
    for axis, (split, subject, volume) in zip(axes.flat, shown):
        axis.imshow(_axial(volume), cmap="gray", origin="lower", vmin=0, vmax=1)
        if outline is not None and outline.shape == _axial(volume).shape:
            axis.contour(outline.astype(float), levels=[0.5], colors="red", linewidths=0.7, origin="lower")
        axis.set_title(f"{subject.removeprefix('sub-')}\n{split}", fontsize=6)
    return figure, len(shown), total


def versions() -> dict[str, str]:
    """Python and the packages that define a study's numbers."""
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


@dataclass(frozen=True)
class Section:
    """One part of the page: a title, a sentence, an optional figure (PNG bytes) and table."""

    title: str
    text: str = ""
    figure: bytes | None = None
    table: pd.DataFrame | None = None


STYLE = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1150px;margin:24px auto;
padding:0 16px;color:#1d2329;line-height:1.45}
h1{font-size:1.7em;border-bottom:2px solid #2b5b84;padding-bottom:6px}h2{font-size:1.25em;color:#2b5b84;
margin-top:2em}p.note{color:#555;font-size:.92em}table{border-collapse:collapse;font-size:.82em;margin:8px 0}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:left;vertical-align:top}th{background:#eef2f6}
tr:nth-child(even) td{background:#f8fafc}img{max-width:100%;height:auto;display:block;margin:8px 0;
border:1px solid #e3e7eb}pre{background:#f6f8fa;border:1px solid #d0d7de;padding:10px;font-size:.8em;
overflow-x:auto}.sanity{border-left:6px solid #d9822b;background:#fff8ef;padding:8px 14px}
.sanity.ok{border-color:#3c9a5f;background:#f1faf4}.sanity td:first-child{width:26%}.sanity table{width:100%}
pre.config{column-count:2;column-rule:1px solid #d0d7de}details{margin:6px 0}summary{cursor:pointer}.wide{overflow-x:auto}nav a{margin-right:12px;font-size:.9em}
"""

SCRIPT = """window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (image) { return image.complete && image.naturalWidth > 0; });
  document.body.setAttribute("data-figures-loaded", String(loaded.length));
  document.body.setAttribute("data-figures-total", String(images.length));
  document.body.setAttribute("data-page-height", String(document.documentElement.scrollHeight));
});"""


def _table(table: pd.DataFrame) -> str:
    return table.to_html(index=False, na_rep="n/a", border=0, float_format=lambda v: f"{v:.3g}")


def _sanity(warnings: list[SanityWarning]) -> str:
    """The warnings grouped by check, each group a collapsible table (open when short)."""
    if not warnings:
        return '<div class="sanity ok"><p>No sanity warnings.</p></div>'
    groups: dict[str, list[SanityWarning]] = {}
    for warning in warnings:
        groups.setdefault(warning.check, []).append(warning)
    parts = []
    for check, found in groups.items():
        rows = "".join(f"<tr><td>{html.escape(w.subject)}</td><td>{html.escape(w.message)}</td></tr>" for w in found)
        parts.append(f"<details{' open' if len(found) <= OPEN_FINDINGS else ''}><summary><b>{html.escape(check)}</b>: "
                     f"{len(found)} finding(s)</summary><table>{rows}</table></details>")
    return (f'<div class="sanity"><p><b>{len(warnings)} warning(s)</b> from {len(groups)} check(s): read them before '
            "the numbers below (also in <code>sanity.tsv</code>).</p>" + "".join(parts) + "</div>")


def _anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower())


def _section(section: Section) -> str:
    parts = [f'<h2 id="{_anchor(section.title)}">{html.escape(section.title)}</h2>']
    if section.text:
        parts.append(f'<p class="note">{html.escape(section.text)}</p>')
    if section.figure is not None:
        encoded = base64.b64encode(section.figure).decode("ascii")
        parts.append(f'<img alt="{html.escape(section.title)}" src="data:image/png;base64,{encoded}">')
    if section.table is not None and not section.table.empty:
        parts.append(f'<div class="wide">{_table(section.table)}</div>')
    return "\n".join(parts)


def report_html(name: str, sanity: list[SanityWarning], sections: list[Section], config_text: str,
                package_versions: dict[str, str]) -> str:
    """The page: sanity warnings first, then ``sections``, the exact configuration and versions."""
    closing = [Section("Configuration", "config.yaml of this study folder, as run."),
               Section("Versions", table=pd.DataFrame(package_versions.items(), columns=["package", "version"]))]
    nav = " ".join(f'<a href="#{_anchor(s.title)}">{html.escape(s.title)}</a>' for s in [*sections, *closing])
    body = [f"<h1>Augmentation study: {html.escape(name)}</h1>", f"<nav>{nav}</nav>",
            '<h2 id="sanity-checks">Sanity checks</h2>', _sanity(sanity), *map(_section, sections),
            _section(closing[0]), f'<pre class="config">{html.escape(config_text)}</pre>', _section(closing[1])]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(name)}: augmentation study</title><style>{STYLE}</style>"
            f"<script>{SCRIPT}</script></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
