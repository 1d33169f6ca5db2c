"""Study reports: mean ± std per condition (layout of thesis Tables 1.6-1.9), paired differences
against real-only with bootstrap 95% CIs, GAN-train / GAN-test (Table 1.2), memorization audit,
``summary.md`` and PNG figures."""

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
from medaug.study.conditions import CONDITIONS  # noqa: E402
from medaug.study.audit import memorization_audit, nearest_distances, paired_bootstrap_ci  # noqa: E402

METRICS = ("balanced_accuracy", "sensitivity", "specificity", "accuracy", "f1", "auc")
KEYS = ["classifier", "condition", "test_set"]


def summary_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per classifier, condition and test set: runs, and mean and std (ddof 1) of each metric."""
    grouped = metrics.groupby(KEYS, sort=False)
    table = grouped.size().rename("runs").reset_index()
    for metric in METRICS:
        stats = grouped[metric].agg(["mean", "std"]).reset_index(drop=True)
        table[f"{metric}_mean"], table[f"{metric}_std"] = stats["mean"].to_numpy(), stats["std"].to_numpy()
    return table


def paired_differences(metrics: pd.DataFrame, seed: int = 0, metric: str = "balanced_accuracy") -> pd.DataFrame:
    """Each condition minus real-only, paired by run (same seed), with a bootstrap 95% CI."""
    rows = []
    for (classifier, test_set), group in metrics.groupby(["classifier", "test_set"], sort=False):
        reference = group[group["condition"] == "real"].set_index("run")[metric]
        for condition, other in group[group["condition"] != "real"].groupby("condition", sort=False):
            paired = other.set_index("run")[metric].to_frame("value").join(reference.rename("real"), how="inner")
            if paired.empty:
                continue
            mean, low, high = paired_bootstrap_ci(paired["value"].to_numpy(), paired["real"].to_numpy(), seed=seed)
            rows.append({"classifier": classifier, "test_set": test_set, "condition": condition,
                         "runs": len(paired), f"{metric}_difference": mean, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


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
                       test, test_labels: torch.Tensor, labels: tuple[str, ...], quantile: float,
                       device: str = "cpu") -> pd.DataFrame:
    """Per sampler and class: fraction of synthetic images nearer to a training image than the
    ``quantile`` of training nearest-neighbour distances, beside the same fraction for held-out
    real test images (what a generator that does not copy should look like). The ``quantile``
    column records the threshold's quantile (the report's text reads it from there)."""
    audited = {}
    for code, label in enumerate(labels):  # one class's training images in memory at a time
        reference = Volumes.of(train).take(train_labels == code).load()
        training_nn = nearest_distances(reference, reference, leave_one_out=True, device=device)
        held_out = memorization_audit(Volumes.of(test).take(test_labels == code), reference, quantile, device,
                                      training_nn)
        for sampler, pool in pools.items():
            audit = memorization_audit(pool[code], reference, quantile, device, training_nn)
            audited[sampler, code] = {"sampler": sampler, "diagnosis": label, "synthetic": len(pool[code]),
                                   "quantile": quantile, "threshold": audit["threshold"],
                                   "fraction_below": audit["fraction_below"],
                                   "test_fraction_below": held_out["fraction_below"],
                                   "synthetic_nn_median": float(np.median(audit["synthetic_nn_distance"])),
                                   "training_nn_median": float(np.median(audit["training_nn_distance"])),
                                   "test_nn_median": float(np.median(held_out["synthetic_nn_distance"]))}
    return pd.DataFrame([audited[sampler, code] for sampler in pools for code in range(len(labels))])


def _save(figure, path: Path) -> None:
    atomic_write(path, lambda p: figure.savefig(p, dpi=120, bbox_inches="tight", format="png"))
    plt.close(figure)


def plot_balanced_accuracy(summary: pd.DataFrame, colours: dict[str, str], path: Path) -> None:
    """Test balanced accuracy per condition (mean ± std over runs, bars coloured by ``colours``
    [condition]), one panel per classifier."""
    test = summary[summary["test_set"] == "test"]
    classifiers = list(dict.fromkeys(test["classifier"]))
    figure, axes = plt.subplots(1, len(classifiers), figsize=(1.2 + 0.9 * test["condition"].nunique() * len(classifiers), 4),
                                squeeze=False, sharey=True)
    for axis, classifier in zip(axes[0], classifiers):
        rows = test[test["classifier"] == classifier]
        axis.bar(range(len(rows)), 100 * rows["balanced_accuracy_mean"], yerr=100 * rows["balanced_accuracy_std"].fillna(0),
                 color=[colours[c] for c in rows["condition"]], capsize=3)
        axis.set_xticks(range(len(rows)), rows["condition"], rotation=60, ha="right", fontsize=8)
        axis.axhline(50, color="k", lw=0.5, ls=":")
        axis.set_title(classifier)
    axes[0][0].set_ylabel("test balanced accuracy (%), mean ± std")
    _save(figure, path)


def plot_synthetic_slices(train, train_labels: torch.Tensor, pools: dict[str, dict[int, Volumes]],
                          labels: tuple[str, ...], path: Path, per_row: int = 4) -> None:
    """Middle axial slices: real training images beside synthetic ones, per class and sampler."""
    real = {code: Volumes.of(train).take(train_labels == code) for code in range(len(labels))}
    sources = [("real", real), *pools.items()]
    figure, axes = plt.subplots(len(sources) * len(labels), per_row, figsize=(1.6 * per_row, 1.8 * len(sources) * len(labels)),
                                squeeze=False)
    for s_index, (source, images) in enumerate(sources):
        for code, label in enumerate(labels):
            row = axes[s_index * len(labels) + code]
            for column, axis in enumerate(row):
                axis.axis("off")
                if column < len(images[code]):
                    volume = Volumes.of(images[code])[column][0].numpy()
                    axis.imshow(volume[:, :, volume.shape[2] // 2].T, cmap="gray", origin="lower", vmin=0, vmax=1)
            row[0].set_title(f"{source} {label}", fontsize=8, loc="left")
    _save(figure, path)


def _percent(mean: float, std: float) -> str:
    """``mean ± std`` in percent; one run has no spread, and says so."""
    if pd.isna(mean):
        return "n/a"
    return f"{100 * mean:.1f} (1 run)" if pd.isna(std) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def _markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    return header + "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in table.itertuples(index=False))


QUALITY_SHOWN = ("sampler", "diagnosis", "diversity", "max_nn_share", "coverage", "precision", "recall",
                 "held_out_max_nn_share", "memorized_fraction", "held_out_memorized_fraction", "copy_fraction",
                 "held_out_copy_fraction",
                 "acceptance_rate", "step_size", "sigma", "ess_per_draw", "split_r_hat", "start_basin_fraction")


def _quantile_text(memorization: pd.DataFrame) -> str:
    """The audit's threshold quantile as a percentage (``5%``), from the table's ``quantile`` column."""
    quantiles = sorted(set(memorization["quantile"])) if "quantile" in memorization else []
    return ", ".join(f"{100 * q:g}%" for q in quantiles) or "configured"


def summary_markdown(name: str, summary: pd.DataFrame, differences: pd.DataFrame, gan: pd.DataFrame,
                     memorization: pd.DataFrame, figures: list[str], quality: pd.DataFrame | None = None) -> str:
    """The human-readable report: warnings first, then tables in percent, mean ± std over runs."""
    lines = [f"# Augmentation study: {name}\n"]
    quality = pd.DataFrame() if quality is None else quality
    flagged = quality[quality["warnings"].astype(bool)] if not quality.empty else quality
    if not flagged.empty:
        lines += ["## Warnings\n", *[f"- **{row.sampler} / {row.diagnosis}**: {row.warnings}"
                                      for row in flagged.itertuples()], ""]
    for test_set, rows in summary.groupby("test_set", sort=False):
        view = pd.DataFrame({"classifier": rows["classifier"], "condition": rows["condition"], "runs": rows["runs"],
                             **{metric: [_percent(m, s) for m, s in zip(rows[f"{metric}_mean"], rows[f"{metric}_std"])]
                                for metric in METRICS}})
        lines += [f"## Test set: {test_set}\n", _markdown(view)]
    if not differences.empty:
        view = differences.assign(**{"difference (points)": [f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
                                                             for d, lo, hi in zip(differences["balanced_accuracy_difference"],
                                                                                  differences["ci_low"], differences["ci_high"])]})
        lines += ["## Balanced accuracy minus real-only (paired by run, bootstrap 95% CI)\n",
                  _markdown(view[["classifier", "test_set", "condition", "runs", "difference (points)"]])]
    if not gan.empty:
        view = pd.DataFrame({"classifier": gan["classifier"], "sampler": gan["sampler"], "N": gan["synthetic_per_class"],
                             "GAN-train": [_percent(m, s) for m, s in zip(gan["gan_train_mean"], gan["gan_train_std"])],
                             "GAN-test": [_percent(m, s) for m, s in zip(gan["gan_test_mean"], gan["gan_test_std"])]})
        lines += ["## GAN-train / GAN-test (balanced accuracy)\n", _markdown(view)]
    if not memorization.empty:
        lines += ["## Memorization audit (fraction nearer to a training image than the "
                  f"{_quantile_text(memorization)} quantile of training nearest-neighbour distances; held-out "
                  "real test images for reference)\n",
                  _markdown(memorization.round(3))]
    if not quality.empty:
        lines += ["## Synthetic image quality (intensity space; see medaug.sampling.quality) and chain diagnostics\n",
                  _markdown(quality[[c for c in QUALITY_SHOWN if c in quality]].round(3))]
    lines += ["## Figures\n", *[f"![{f}]({f})\n" for f in figures]]
    return "\n".join(lines)


def write_report(run_dir: Path, name: str, metrics: pd.DataFrame, memorization: pd.DataFrame, seed: int,
                 quality: pd.DataFrame | None = None) -> dict:
    """Write metrics.tsv, summary.tsv, differences.tsv, gan.tsv, memorization.tsv, quality.tsv,
    summary.md and figures."""
    summary = summary_table(metrics)
    differences = paired_differences(metrics, seed=seed)
    gan = gan_table(metrics)
    write_tsv(run_dir / "metrics.tsv", metrics)
    write_tsv(run_dir / "summary.tsv", summary)
    write_tsv(run_dir / "differences.tsv", differences)
    write_tsv(run_dir / "gan.tsv", gan)
    if not memorization.empty:
        write_tsv(run_dir / "memorization.tsv", memorization)
    if quality is not None and not quality.empty:
        write_tsv(run_dir / "quality.tsv", quality)
    colours = {c: CONDITIONS.get(kind).colour for c, kind in zip(metrics["condition"], metrics["kind"])}
    plot_balanced_accuracy(summary, colours, run_dir / "figures" / "balanced_accuracy.png")
    figures = ["figures/balanced_accuracy.png"]
    if (run_dir / "figures" / "synthetic_vs_real.png").exists():
        figures.append("figures/synthetic_vs_real.png")
    write_text(run_dir / "summary.md", summary_markdown(name, summary, differences, gan, memorization, figures,
                                                             quality))
    return {"summary": summary, "differences": differences, "gan": gan}
