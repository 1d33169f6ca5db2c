"""Study reports: mean ± std per condition (layout of thesis Tables 1.6-1.9), paired differences
against real-only with bootstrap 95% CIs, balanced-accuracy CIs over test subjects and runs,
GAN-train / GAN-test (Table 1.2), memorization audit, sanity checks (:mod:`medaug.study.sanity`),
``summary.md``, ``report.html`` (:mod:`medaug.study.html_report`) and PNG figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from medaug.data.volumes import Volumes  # noqa: E402
from medaug.io import atomic_write, write_text, write_tsv  # noqa: E402
from medaug.sampling.quality import copy_audit  # noqa: E402
from medaug.study.classifiers import CLASSIFIERS  # noqa: E402
from medaug.study.conditions import CONDITIONS  # noqa: E402
from medaug.study.html_report import (EXAMPLES, Section, StudyImages, generator_curves_figure,  # noqa: E402
                                      learning_curves_figure, nearest_real_figure, png_bytes, qc_montage_figure,
                                      report_html, versions)
from medaug.study.saliency import INTERPRET_DIR, OVERLAY_FILE  # noqa: E402
from medaug.study.sanity import SanityWarning, pool_warnings, sanity_checks, sanity_table  # noqa: E402

METRICS = ("balanced_accuracy", "sensitivity", "specificity", "accuracy", "f1", "auc")
KEYS = ["classifier", "condition", "test_set"]
PREDICTION_COLUMNS = ("test_set", "participant_id", "session_id", "true_label", "predicted_label")


def summary_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per classifier, condition and test set: runs, and mean and std (ddof 1) of each metric."""
    grouped = metrics.groupby(KEYS, sort=False)
    table = grouped.size().rename("runs").reset_index()
    for metric in METRICS:
        stats = grouped[metric].agg(["mean", "std"]).reset_index(drop=True)
        table[f"{metric}_mean"], table[f"{metric}_std"] = stats["mean"].to_numpy(), stats["std"].to_numpy()
    return table


def paired_differences(predictions: pd.DataFrame, seed: int = 0, resamples: int = 2000) -> pd.DataFrame:
    """Each condition minus real-only, per classifier and test set: the mean over runs of the
    balanced-accuracy difference, paired by run (same seed) and by test subject, with a bootstrap
    95% CI that resamples test subjects within label and runs, the same draws for both conditions
    (:func:`balanced_accuracy_difference_ci`)."""
    rows = []
    correct = _correct_tables(predictions)
    for (classifier, test_set), tables in correct.items():
        if "real" not in tables:
            continue
        reference, labels = tables["real"]
        for condition, (table, _) in tables.items():
            if condition == "real":
                continue
            runs = reference.index.intersection(table.index)
            if runs.empty:
                continue
            mean, low, high = balanced_accuracy_difference_ci(table.loc[runs].to_numpy(bool),
                                                              reference.loc[runs].to_numpy(bool), labels,
                                                              resamples=resamples, seed=seed)
            rows.append({"classifier": classifier, "test_set": test_set, "condition": condition, "runs": len(runs),
                         "balanced_accuracy_difference": mean, "ci_low": low, "ci_high": high,
                         "resampled": "test subjects within label, and runs"})
    return pd.DataFrame(rows, columns=["classifier", "test_set", "condition", "runs", "balanced_accuracy_difference",
                                       "ci_low", "ci_high", "resampled"])


def _correct_tables(predictions: pd.DataFrame) -> dict:
    """(classifier, test set) → condition → (runs × subjects correctness table, the subjects' labels),
    subjects in one order for every condition of a test set."""
    keys = ["participant_id", "session_id"]
    out: dict = {}
    for (classifier, test_set), group in predictions.groupby(["classifier", "test_set"], sort=False):
        group = group.fillna({"session_id": "n/a"})
        subjects = group.drop_duplicates(keys).set_index(keys)["true_label"]
        for condition, rows in group.groupby("condition", sort=False):
            table = rows.assign(correct=rows["predicted_label"] == rows["true_label"]).pivot_table(
                index="run", columns=keys, values="correct", aggfunc="first").reindex(columns=subjects.index)
            out.setdefault((classifier, test_set), {})[condition] = (table, subjects.to_numpy())
        common = None
        for table, _ in out[(classifier, test_set)].values():
            complete = table.columns[table.notna().all()]
            common = complete if common is None else common.intersection(complete)
        out[(classifier, test_set)] = {condition: (table[common], subjects.reindex(common).to_numpy())
                                       for condition, (table, _) in out[(classifier, test_set)].items()}
    return out


def gan_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """GAN-train: trained on synthetic only (largest N), tested on real test images; GAN-test: the
    real-only classifier tested on the synthetic pool. Balanced accuracy mean and std over runs."""
    rows = []
    test = metrics[metrics["test_set"] == "test"]
    trained_on_synthetic = test["kind"].map(lambda kind: CONDITIONS.get(kind).gan_train).astype(bool)
    for (classifier, sampler), group in test[trained_on_synthetic].groupby(["classifier", "sampler"], sort=False):
        largest = group[group["synthetic_per_class"] == group["synthetic_per_class"].max()]
        real = metrics[(metrics["classifier"] == classifier) & (metrics["condition"] == "real")
                       & (metrics["test_set"] == f"synthetic-{sampler}")]
        rows.append({"classifier": classifier, "sampler": sampler,
                     "synthetic_per_class": int(largest["synthetic_per_class"].iloc[0]),
                     "gan_train_mean": largest["balanced_accuracy"].mean(), "gan_train_std": largest["balanced_accuracy"].std(),
                     "gan_test_mean": real["balanced_accuracy"].mean(), "gan_test_std": real["balanced_accuracy"].std()})
    return pd.DataFrame(rows)


def memorization_table(pools: dict[str, dict[int, Volumes]], train, train_labels: torch.Tensor,
                       labels: tuple[str, ...], quantile: float) -> pd.DataFrame:
    """Per sampler and class, over the whole pool: the copy audit of :mod:`medaug.sampling.quality`
    (novel, copies near one training image, averages near several; nearest and second-nearest
    distance medians), beside the training images' own figures leave one out. The ``quantile``
    column records the threshold's quantile (the report's text reads it from there)."""
    audited = {}
    for code, label in enumerate(labels):  # one class's training images in memory at a time
        reference = Volumes.of(train).take(train_labels == code).load()
        for sampler, pool in pools.items():
            audit = copy_audit(Volumes.of(pool[code]).batches(64), reference, quantile)
            audit.pop("samples")
            audited[sampler, code] = {"sampler": sampler, "diagnosis": label, "synthetic": len(pool[code]), **audit}
    return pd.DataFrame([audited[sampler, code] for sampler in pools for code in range(len(labels))])


def _save(figure, path: Path) -> bytes:
    """Write the figure as a PNG file; return its bytes (for report.html)."""
    data = png_bytes(figure)
    atomic_write(path, lambda p: p.write_bytes(data))
    return data


def task_tables(run_dir: Path, metrics: pd.DataFrame, file: str, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """``file`` of every task folder of ``metrics`` (missing ones skipped) with classifier, condition
    and run columns; an empty table has ``columns``."""
    frames = []
    for task in metrics[["classifier", "condition", "run"]].drop_duplicates().itertuples(index=False):
        path = run_dir / "runs" / task.classifier / task.condition / f"run-{int(task.run):02d}" / file
        if path.exists():
            table = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=["n/a"])
            frames.append(table.assign(classifier=task.classifier, condition=task.condition, run=int(task.run)))
    if not frames:
        return pd.DataFrame(columns=["classifier", "condition", "run", *columns])
    return pd.concat(frames, ignore_index=True)


def _resampled_scores(corrects: list[np.ndarray], labels: np.ndarray, rng: np.random.Generator, resamples: int,
                      chunk: int) -> list[np.ndarray]:
    """Per matrix of ``corrects`` (runs × subjects): the (resamples × runs) balanced accuracies of
    ``resamples`` draws of subjects within each label, the same draws for every matrix. Drawn
    ``chunk`` at a time, as subject counts, so large synthetic test sets stay small in memory."""
    classes = np.unique(labels)
    scores = [np.zeros((resamples, len(correct))) for correct in corrects]
    for label in classes:
        columns = [correct[:, labels == label] for correct in corrects]
        size = columns[0].shape[1]
        for start in range(0, resamples, chunk):
            draws = min(chunk, resamples - start)
            picked = rng.integers(0, size, (draws, size)) + size * np.arange(draws)[:, None]
            counts = np.bincount(picked.ravel(), minlength=draws * size).reshape(draws, size).astype(float)
            for score, column in zip(scores, columns):
                score[start:start + len(counts)] += counts @ column.T / size / len(classes)
    return scores


def _point(correct: np.ndarray, labels: np.ndarray) -> float:
    """Mean over runs of the balanced accuracy."""
    return float(np.mean([correct[:, labels == label].mean(1) for label in np.unique(labels)], 0).mean())


def _interval(means: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def balanced_accuracy_ci(correct: np.ndarray, labels: np.ndarray, *, resamples: int = 2000, seed: int = 0,
                         level: float = 0.95, chunk: int = 250) -> tuple[float, float, float]:
    """Mean over runs of the balanced accuracy of ``correct`` (runs × subjects, bool) and its
    percentile bootstrap CI, resampling subjects within each label (the same draw for every run:
    the runs share the test set) and runs."""
    rng = np.random.default_rng(seed)
    correct = np.asarray(correct, dtype=float)
    (scores,) = _resampled_scores([correct], labels, rng, resamples, chunk)
    runs = rng.integers(0, len(correct), (resamples, len(correct)))
    return (_point(correct, labels), *_interval(np.take_along_axis(scores, runs, axis=1).mean(1), level))


def balanced_accuracy_difference_ci(correct: np.ndarray, reference: np.ndarray, labels: np.ndarray, *,
                                    resamples: int = 2000, seed: int = 0, level: float = 0.95,
                                    chunk: int = 250) -> tuple[float, float, float]:
    """Mean over runs of balanced accuracy(``correct``) − balanced accuracy(``reference``), both
    runs × subjects on the same runs (paired by seed) and subjects, and its percentile bootstrap CI:
    each resample draws subjects within label and runs once, for both conditions."""
    rng = np.random.default_rng(seed)
    correct, reference = np.asarray(correct, dtype=float), np.asarray(reference, dtype=float)
    scores, base = _resampled_scores([correct, reference], labels, rng, resamples, chunk)
    runs = rng.integers(0, len(correct), (resamples, len(correct)))
    means = (np.take_along_axis(scores, runs, axis=1) - np.take_along_axis(base, runs, axis=1)).mean(1)
    return (_point(correct, labels) - _point(reference, labels), *_interval(means, level))


def accuracy_intervals(predictions: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per classifier, condition and test set: mean balanced accuracy over runs with a bootstrap 95%
    CI over test subjects (within label) and runs, and the test subjects of the smallest label."""
    rows = []
    keys = ["participant_id", "session_id"]
    for (classifier, condition, test_set), group in predictions.groupby(["classifier", "condition", "test_set"],
                                                                         sort=False):
        group = group.fillna({"session_id": "n/a"})  # synthetic images have no session
        correct = group.assign(correct=group["predicted_label"] == group["true_label"]).pivot_table(
            index="run", columns=keys, values="correct", aggfunc="first").dropna(axis=1)
        labels = group.drop_duplicates(keys).set_index(keys)["true_label"].reindex(correct.columns).to_numpy()
        mean, low, high = balanced_accuracy_ci(correct.to_numpy(bool), labels, seed=seed)
        rows.append({"classifier": classifier, "condition": condition, "test_set": test_set, "runs": len(correct),
                     "per_label": int(pd.Series(labels).value_counts().min()), "balanced_accuracy": mean,
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["classifier", "condition", "test_set", "runs", "per_label",
                                       "balanced_accuracy", "ci_low", "ci_high"])


def plot_balanced_accuracy(intervals: pd.DataFrame, colours: dict[str, str]):
    """Test balanced accuracy per condition (bars: mean over runs, coloured by ``colours``[condition];
    whiskers: the bootstrap 95% CI over test subjects and runs), one panel per classifier."""
    test = intervals[intervals["test_set"] == "test"]
    classifiers = list(dict.fromkeys(test["classifier"]))
    columns = min(2, max(1, len(classifiers)))
    lines = max(1, -(-len(classifiers) // columns))
    conditions = max(1, test.groupby("classifier").size().max() if len(test) else 1)
    figure, axes = plt.subplots(lines, columns, figsize=(5.6 * columns, (0.8 + 0.32 * conditions) * lines),
                                squeeze=False, sharex=True)
    for axis in axes.flat[len(classifiers):]:
        axis.axis("off")
    for axis, classifier in zip(axes.flat, classifiers):
        rows = test[test["classifier"] == classifier].iloc[::-1]
        mean = 100 * rows["balanced_accuracy"].to_numpy()
        error = np.vstack([mean - 100 * rows["ci_low"].to_numpy(), 100 * rows["ci_high"].to_numpy() - mean])
        axis.barh(range(len(rows)), mean, xerr=error, color=[colours.get(c, "tab:purple") for c in rows["condition"]],
                  capsize=2, error_kw={"lw": 0.8})
        axis.set_yticks(range(len(rows)), rows["condition"], fontsize=8)
        axis.axvline(50, color="k", lw=0.6, ls=":")
        axis.set_xlim(0, 100)
        axis.set_title(f"{classifier} (test: {int(rows['per_label'].min())} subjects per label, "
                       f"{int(rows['runs'].max())} runs)", fontsize=9)
    for axis in axes[-1]:
        axis.set_xlabel("test balanced accuracy (%), mean and 95% CI")
    figure.tight_layout()
    return figure


def _percent(mean: float, std: float) -> str:
    """``mean ± std`` in percent; one run has no spread, and says so."""
    if pd.isna(mean):
        return "n/a"
    return f"{100 * mean:.1f} (1 run)" if pd.isna(std) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def _markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    return header + "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in table.itertuples(index=False))


QUALITY_SHOWN = ("sampler", "diagnosis", "diversity", "max_nn_share", "real_max_nn_share", "coverage", "precision",
                 "recall", "novel_fraction", "copy_fraction", "average_fraction", "real_copy_fraction",
                 "real_average_fraction", "nn_distance_median", "second_nn_distance_median", "real_nn_distance_median",
                 "reconstruction_copy_fraction", "reconstruction_average_fraction", "novelty_dropped", "novelty_drawn",
                 "acceptance_rate", "step_size", "sigma", "ess_per_draw", "split_r_hat", "start_basin_fraction")


AUDIT_TEXT = ("τ is the {} quantile of the training images' leave-one-out nearest-neighbour distances, "
              "τ_typical that of their median distances to the others; a sample within τ of a training image and "
              "far from the others is a copy, one near several or nearer to the training set as a whole than real "
              "images are (median distance below τ_typical) an average (a blend or class mean), any other novel; "
              "real_* columns score the training images themselves, leave one out")


def _quantile_text(memorization: pd.DataFrame) -> str:
    """The audit's threshold quantile as a percentage (``5%``), from the table's ``quantile`` column."""
    quantiles = sorted(set(memorization["quantile"])) if "quantile" in memorization else []
    return ", ".join(f"{100 * q:g}%" for q in quantiles) or "configured"


def _summary_view(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"classifier": rows["classifier"], "condition": rows["condition"], "runs": rows["runs"],
                         **{metric: [_percent(m, s) for m, s in zip(rows[f"{metric}_mean"], rows[f"{metric}_std"])]
                            for metric in METRICS}})


def _differences_view(differences: pd.DataFrame) -> pd.DataFrame:
    points = [f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]" for d, lo, hi in
              zip(differences["balanced_accuracy_difference"], differences["ci_low"], differences["ci_high"])]
    return differences[["classifier", "test_set", "condition", "runs"]].assign(**{"difference (points)": points})


def _gan_view(gan: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"classifier": gan["classifier"], "sampler": gan["sampler"], "N": gan["synthetic_per_class"],
                         "GAN-train": [_percent(m, s) for m, s in zip(gan["gan_train_mean"], gan["gan_train_std"])],
                         "GAN-test": [_percent(m, s) for m, s in zip(gan["gan_test_mean"], gan["gan_test_std"])]})


def _quality_view(quality: pd.DataFrame) -> pd.DataFrame:
    return quality[[c for c in QUALITY_SHOWN if c in quality]].round(3)


def _quality_columns(quality: pd.DataFrame) -> pd.DataFrame:
    """The quality table with one column per pool (sampler / class), one row per measure."""
    view = _quality_view(quality)
    pools = view["sampler"] + " / " + view["diagnosis"]
    return view.drop(columns=["sampler", "diagnosis"]).T.set_axis(pools, axis=1).rename_axis("measure").reset_index()


def _sanity_markdown(sanity: list[SanityWarning]) -> list[str]:
    """The warnings grouped by check."""
    if not sanity:
        return ["## Sanity checks\n", "No warnings.\n"]
    checks = list(dict.fromkeys(w.check for w in sanity))
    lines = ["## Sanity checks\n", f"{len(sanity)} warning(s) from {len(checks)} check(s), also in sanity.tsv:\n"]
    for check in checks:
        found = [w for w in sanity if w.check == check]
        lines += [f"- **{check}** ({len(found)})", *[f"  - {w.subject}: {w.message}" for w in found]]
    return [*lines, ""]


def summary_markdown(name: str, summary: pd.DataFrame, differences: pd.DataFrame, gan: pd.DataFrame,
                     memorization: pd.DataFrame, figures: list[str], quality: pd.DataFrame | None = None,
                     sanity: list[SanityWarning] | None = None) -> str:
    """The human-readable report: sanity checks first (``sanity``; without it, the pools' own
    warnings of ``quality``), then tables in percent, mean ± std over runs."""
    quality = pd.DataFrame() if quality is None else quality
    lines = [f"# Augmentation study: {name}\n",
             *_sanity_markdown(pool_warnings(quality) if sanity is None else sanity)]
    for test_set, rows in summary.groupby("test_set", sort=False):
        lines += [f"## Test set: {test_set}\n", _markdown(_summary_view(rows))]
    if not differences.empty:
        lines += ["## Balanced accuracy minus real-only (paired by run and test subject; bootstrap 95% CI resampling test subjects within label and runs)\n",
                  _markdown(_differences_view(differences))]
    if not gan.empty:
        lines += ["## GAN-train / GAN-test (balanced accuracy)\n", _markdown(_gan_view(gan))]
    if not memorization.empty:
        lines += [f"## Copies and averages (whole pools; {AUDIT_TEXT.format(_quantile_text(memorization))})\n",
                  _markdown(memorization.round(3))]
    if not quality.empty:
        lines += ["## Synthetic image quality (intensity space; see medaug.sampling.quality) and chain diagnostics\n",
                  _markdown(_quality_view(quality))]
    lines += ["## Figures\n", *[f"![{f}]({f})\n" for f in figures], "Everything on one page: report.html\n"]
    return "\n".join(lines)


def _by_classifier(frame: pd.DataFrame, values: str) -> pd.DataFrame:
    """``values`` with one row per test set and condition (in order of first appearance) and one
    column per classifier."""
    table = frame.pivot(index=["test_set", "condition"], columns="classifier", values=values)
    test_sets, conditions = list(dict.fromkeys(frame["test_set"])), list(dict.fromkeys(frame["condition"]))
    order = sorted(table.index, key=lambda key: (test_sets.index(key[0]), conditions.index(key[1])))
    table = table.reindex(index=order, columns=list(dict.fromkeys(frame["classifier"]))).fillna("–")
    return table.rename_axis(columns=None).reset_index().rename(columns={"test_set": "test set"})


def _intervals_view(intervals: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over runs [95% CI over subjects and runs], conditions × classifiers per test set."""
    joined = intervals.join(summary.set_index(KEYS)[["balanced_accuracy_mean", "balanced_accuracy_std"]], on=KEYS)
    cells = [f"{_percent(m, s)} [{100 * lo:.1f}, {100 * hi:.1f}]" for m, s, lo, hi in
             zip(joined["balanced_accuracy_mean"], joined["balanced_accuracy_std"], joined["ci_low"], joined["ci_high"])]
    test_sets = [f"{t} ({n} per label)" for t, n in zip(joined["test_set"], joined["per_label"])]
    return _by_classifier(joined.assign(cell=cells, test_set=test_sets), "cell")


def _excluded(run_dir: Path) -> pd.DataFrame:
    """The images preprocessing QC left out, of the study cohort (caps/) and independent ones (caps_*/)."""
    tables = [pd.read_csv(path, sep="\t", keep_default_na=False) for path in sorted(run_dir.glob("caps*/excluded.tsv"))]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _trials(run_dir: Path, metrics: pd.DataFrame) -> pd.DataFrame | None:
    """The CNN search's trials, when a classifier of ``metrics`` used it."""
    path = run_dir / "search" / "trials.tsv"
    searched = any(name in CLASSIFIERS and CLASSIFIERS.get(name).needs_search for name in set(metrics["classifier"]))
    return pd.read_csv(path, sep="\t") if searched and path.exists() else None


def _image_sections(run_dir: Path, images: StudyImages | None, logs: pd.DataFrame, colours: dict) -> list[Section]:
    """Learning curves, synthetic images beside their nearest real one, and the QC montage (also
    written to figures/)."""
    figures = run_dir / "figures"
    curves = learning_curves_figure(logs, colours)
    sections = [Section("Learning curves", "Train loss and validation balanced accuracy per epoch, mean over runs "
                        "per condition (training_log.tsv of the CNN runs).",
                        _save(curves, figures / "learning_curves.png") if curves else None)]
    generators = run_dir / "generators"
    generator_logs = {**{path.parent.name: pd.read_csv(path) for path in sorted(generators.glob("*/training_log.csv"))},
                      **{f"{path.parent.parent.name} {path.parent.name}": pd.read_csv(path)
                         for path in sorted(generators.glob("by-sampler/*/*/training_log.csv"))}}
    generator_curves = generator_curves_figure(generator_logs)
    if generator_curves is not None:
        sections.append(Section("Generator training", "Training and validation loss per epoch of each class's "
                                "generator (generators/<label>/training_log.csv); the kept weights are those of the "
                                "dotted epoch. The validation images never choose anything when the training loss "
                                "selects: their curve shows how far the generator overfits its class.",
                                _save(generator_curves, figures / "generator_training.png")))
    if images is None:
        return sections
    pairs = nearest_real_figure(images)
    if pairs is not None:
        sections.append(Section("Synthetic images and their nearest real training image",
                                f"Middle axial slices: the first {EXAMPLES} images of each pool, each beside the "
                                "training image of its class nearest in L2 over the whole volume.",
                                _save(pairs, figures / "synthetic_vs_real.png")))
    for folder in images.saliency:
        overlay = folder / OVERLAY_FILE
        classifier, condition, method = folder.relative_to(run_dir / INTERPRET_DIR).parts
        sections.append(Section(f"Where the model looks: {classifier}, {condition} ({method})",
                                "Class-mean saliency for the positive class over the test subjects of each label "
                                "(mean over runs), on the registration template; maps per subject in "
                                f"{overlay.parent.relative_to(run_dir)}/ (`medaug interpret`).", overlay.read_bytes()))
    montage, shown, total = qc_montage_figure(images)
    outline = ("Red: the registration template's brain mask on the study grid; a well registered image fills it."
               if images.outline is not None else
               "Preprocessing is disabled: the images are shown as read, without a template outline.")
    sections.append(Section("Preprocessing QC", f"Middle axial slice of one image per subject ({shown} of {total} "
                            f"subjects). {outline}", _save(montage, figures / "qc_montage.png")))
    return sections


def write_report(run_dir: Path, name: str, metrics: pd.DataFrame, memorization: pd.DataFrame, seed: int,
                 quality: pd.DataFrame | None = None, images: StudyImages | None = None) -> dict:
    """Write metrics.tsv, summary.tsv, differences.tsv, gan.tsv, memorization.tsv, quality.tsv,
    sanity.tsv, summary.md, report.html and figures. ``images``: what the image figures show
    (without it, report.html has the tables and curves only)."""
    quality = pd.DataFrame() if quality is None else quality
    summary = summary_table(metrics)
    gan = gan_table(metrics)
    predictions = task_tables(run_dir, metrics, "predictions.tsv", PREDICTION_COLUMNS)
    differences = paired_differences(predictions, seed=seed)
    intervals = accuracy_intervals(predictions, seed=seed)
    sanity = sanity_checks(predictions=predictions, summary=summary, differences=differences, intervals=intervals,
                           quality=quality, trials=_trials(run_dir, metrics), excluded=_excluded(run_dir),
                           generator_training=images.data.train.rows if images and images.pools else None)
    for file, table in {"metrics.tsv": metrics, "summary.tsv": summary, "differences.tsv": differences,
                        "gan.tsv": gan, "accuracy_ci.tsv": intervals, "sanity.tsv": sanity_table(sanity)}.items():
        write_tsv(run_dir / file, table)
    if not memorization.empty:
        write_tsv(run_dir / "memorization.tsv", memorization)
    if not quality.empty:
        write_tsv(run_dir / "quality.tsv", quality)
    colours = {c: CONDITIONS.get(kind).colour for c, kind in zip(metrics["condition"], metrics["kind"])}
    accuracy = _save(plot_balanced_accuracy(intervals, colours), run_dir / "figures" / "balanced_accuracy.png")
    sections = [Section("Balanced accuracy", "Bars: mean test balanced accuracy over runs; whiskers: bootstrap 95% "
                        "CI resampling test subjects (within label) and runs. Dotted line: chance. Table: mean ± std "
                        "over runs [95% CI], in percent.", accuracy,
                        _intervals_view(intervals, summary)),
                Section("Balanced accuracy minus real-only", "In points, paired by run (same seed) and test subject; "
                        "the bootstrap 95% CI resamples the test subjects within each label and the runs, the same "
                        "draws for both conditions, so it covers the test set's size as well as the seeds.", table=_by_classifier(_differences_view(differences), "difference (points)")
                        if not differences.empty else None),
                *_image_sections(run_dir, images, task_tables(run_dir, metrics, "training_log.tsv"), colours),
                Section("GAN-train / GAN-test", table=_gan_view(gan) if not gan.empty else None),
                Section("Synthetic image quality", "Intensity space (medaug.sampling.quality) and chain diagnostics.",
                        table=_quality_columns(quality) if not quality.empty else None),
                Section("Copies and averages", f"Whole pools; {AUDIT_TEXT.format(_quantile_text(memorization))}.",
                        table=memorization.round(3) if not memorization.empty else None)]
    figures = [f"figures/{p.name}" for p in sorted((run_dir / "figures").glob("*.png"))]
    write_text(run_dir / "summary.md", summary_markdown(name, summary, differences, gan, memorization, figures,
                                                        quality, sanity))
    config = run_dir / "config.yaml"
    page = report_html(name, sanity, [s for s in sections if s.figure or s.table is not None],
                       config.read_text() if config.exists() else "(no config.yaml in this folder)", versions())
    write_text(run_dir / "report.html", page)
    return {"summary": summary, "differences": differences, "gan": gan, "intervals": intervals, "sanity": sanity}
