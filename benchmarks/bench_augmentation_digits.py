"""The thesis's reduced-data augmentation protocol (§1.4.2) on scikit-learn's bundled digits.

Per seed and class: ``--train`` training images, 5 validation images (classifier early stopping;
the generators only log their loss), every other image of the class for the test set. One RHVAE
(thesis Table 1.15: d = 10, K = 3, ε = 1e-2, T = 1.5, λ = 1e-3, √β₀ = 0.3; Table 1.10 networks)
and one vanilla VAE (same networks) per class, Adam 1e-3, one batch per step, trained as medaug
trains every generator for augmentation (:class:`TrainerConfig` defaults: the training loss
selects the kept weights and stops training after ``--patience-steps`` steps without improving,
``--max-steps`` at most); a generator the samplers refuse as collapsed gives no pool (counted).
``--synthetic`` images per class from each sampler:

  rhvae-hmc (adaptive, sampling temperature from the code spacing), rhvae-hmc-fixed (the thesis's
  fixed ε = 0.03, trained T, S = {‖z‖ ≤ 2 max‖cᵢ‖}), random-walk (RHVAE metric), geometric, gmm,
  two-stage, prior (VAE), and the copy
  controls posterior (z ~ q(z|xᵢ) of the RHVAE, decoded) and jitter (training images + N(0, 0.05²)),
  beside classic augmentation (random rotation ±15° and shift ±1 pixel, same count).

Classifiers: the thesis's MLP (400 ReLU units, Adam 1e-3, stop when the validation loss has not
improved for 20 epochs) and medaug's Conv5FC3 in 2D, trained on real, synthetic-only and
real + synthetic sets. Printed: test accuracy mean ± std over seeds, paired differences against
real-only, the VAE prior and both copy controls (bootstrap 95% CIs), sample-quality measures
(:mod:`medaug.sampling.quality`: novel / copies / averages beside the real images' own figures)
and chain diagnostics (means over classes and seeds). Writes a TSV of every run, a text summary
and a PNG grid of samples beside their nearest training image.

Run: python benchmarks/bench_augmentation_digits.py [--train 20] [--synthetic 200] [--seeds 10]
     [--classifiers mlp,cnn] [--samplers ...] [--max-steps 3000] [--patience-steps 300]
     [--out benchmarks/results_augmentation_digits]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from sklearn.datasets import load_digits
from torch import nn

from medaug.errors import UninformativeGeneratorError
from medaug.generative.config import GeneratorConfig
from medaug.generative.models import build_model
from medaug.generative.trainer import TrainerConfig, train_generator
from medaug.nets.classifiers import Conv5FC3
from medaug.sampling.quality import reconstruct, sample_quality
from medaug.sampling.samplers import build_sampler
from medaug.study.audit import paired_bootstrap_ci

SAMPLERS = {  # name -> (generator, sampler, options)
    "rhvae-hmc": ("rhvae", "rhvae-hmc", {}),
    "rhvae-hmc-fixed": ("rhvae", "rhvae-hmc", {"warmup": 0, "temperature": "model", "support": "thesis",
                                               "step_size": 0.03, "step_jitter": 0.0}),
    "random-walk": ("rhvae", "random-walk", {}),
    "geometric": ("vae", "geometric", {}), "gmm": ("vae", "gmm", {"n_components": 3}),
    "two-stage": ("vae", "two-stage", {}), "prior": ("vae", "prior", {}),
    "posterior": ("rhvae", "posterior", {}), "jitter": ("rhvae", "jitter", {"noise_std": 0.05})}
CONTROLS = ("prior", "posterior", "jitter")
CHAIN_KEYS = ("acceptance_rate", "step_size", "sigma", "ess_per_draw", "split_r_hat", "start_basin_fraction")
QUALITY_KEYS = ("diversity", "max_nn_share", "real_max_nn_share", "coverage", "precision", "recall", "novel_fraction",
                "copy_fraction", "average_fraction", "real_copy_fraction", "real_average_fraction",
                "reconstruction_copy_fraction", "reconstruction_average_fraction")


def split(images, targets, train: int, seed: int, classes: int = 10):
    rng = np.random.default_rng(seed)
    parts = {"train": [], "validation": [], "test": []}
    for label in range(classes):
        index = rng.permutation(np.flatnonzero(targets == label))
        for name, chosen in (("train", index[:train]), ("validation", index[train:train + 5]),
                             ("test", index[train + 5:])):
            parts[name].append(chosen)
    return {name: np.concatenate(chosen) for name, chosen in parts.items()}


def train_digit_generator(model: str, train, validation, seed: int, out: Path, args):
    rhvae = {"metric_hidden": 400, "leapfrog_steps": 3, "step_size": 1e-2, "temperature": 1.5, "regularization": 1e-3,
             "sqrt_beta_zero": 0.3}
    config = GeneratorConfig(input_shape=(1, 8, 8), model=model, latent_dim=10, hidden=(400,),
                             options=rhvae if model == "rhvae" else {})
    torch.manual_seed(seed)
    result = train_generator(build_model(config), train, validation, out,
                             TrainerConfig(learning_rate=1e-3, batch_size=len(train), max_steps=args.max_steps,
                                           patience_steps=args.patience_steps, seed=seed, checkpoint_minutes=1e9))
    return result["model"].eval()


def classic(images: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        image = images[k % len(images), 0].numpy()
        rotated = ndimage.rotate(image, rng.uniform(-15, 15), reshape=False, order=1)
        out.append(np.clip(ndimage.shift(rotated, rng.integers(-1, 2, 2), order=0), 0, 1))
    return torch.tensor(np.stack(out), dtype=torch.float32)[:, None]


def make_classifier(kind: str, classes: int) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 400), nn.ReLU(), nn.Linear(400, classes))
    return Conv5FC3((1, 8, 8), classes=classes, channels=(16, 32, 64), dropout=0.25, fc_scale=1.0)


def fit_and_score(kind: str, train: tuple, validation: tuple, test: tuple, seed: int, classes: int,
                  patience: int = 20, max_epochs: int = 300, batch: int = 200) -> float:
    """Adam 1e-3; weights of the epoch with the lowest validation loss; test accuracy."""
    torch.manual_seed(seed)
    model = make_classifier(kind, classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    x, y = train
    best, best_state, waited = float("inf"), None, 0
    for _ in range(max_epochs):
        model.train()
        for index in torch.randperm(len(x), generator=generator).split(batch):
            if len(index) < 2:
                continue
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            loss = float(nn.functional.cross_entropy(model(validation[0]), validation[1]))
        if loss < best:
            best, best_state, waited = loss, {k: v.clone() for k, v in model.state_dict().items()}, 0
        else:
            waited += 1
            if waited >= patience:
                break
    model.load_state_dict(best_state)
    with torch.no_grad():
        return float((model(test[0]).argmax(1) == test[1]).double().mean())


def run_seed(seed: int, args, images, targets, work: Path):
    parts = split(targets=targets, images=images, train=args.train, seed=seed, classes=args.classes)
    x = {name: images[index] for name, index in parts.items()}
    y = {name: torch.as_tensor(targets[index]) for name, index in parts.items()}
    pools, quality, shown = {name: [] for name in args.samplers}, [], {}
    for label in range(args.classes):
        train, validation = x["train"][y["train"] == label], x["validation"][y["validation"] == label]
        kinds = {SAMPLERS[name][0] for name in args.samplers}
        models = {kind: train_digit_generator(kind, train, validation, 1000 * seed + label,
                                              work / f"s{seed}_{kind}_{label}", args) for kind in sorted(kinds)}
        for name in args.samplers:
            kind, sampler_name, options = SAMPLERS[name]
            model = models[kind]
            row = {"seed": seed, "label": label, "sampler": name}
            try:
                sampler = build_sampler(sampler_name, **options).fit(model, train)
            except UninformativeGeneratorError as error:
                logging.warning("seed %d class %d %s: %s", seed, label, name, error)
                pools[name].append(None)
                quality.append({**row, "refused": True})
                continue
            samples = sampler.sample(args.synthetic, seed=10_000 * seed + label)
            pools[name].append(samples.images)
            measures = sample_quality(samples.images, train, reconstructions=reconstruct(model, train))
            quality.append({**row, "refused": False, **{k: measures[k] for k in QUALITY_KEYS},
                            **{k: samples.diagnostics[k] for k in CHAIN_KEYS if k in samples.diagnostics},
                            "active_dimensions": sampler.posterior.get("active_dimensions"),
                            "decoded_spread": sampler.posterior.get("decoded_spread")})
            if seed == args.seeds[0] and label in (3, 8):
                shown[name, label] = (samples.images[:6], train)
    return x, y, pools, quality, shown


def evaluate(seed, args, x, y, pools):
    rows = []
    real = (x["train"], y["train"])
    labels = torch.arange(args.classes).repeat_interleave(args.synthetic)
    sets = {"real": real,
            "classic": (torch.cat([real[0], *[classic(x["train"][y["train"] == c], args.synthetic, seed * 10 + c)
                                             for c in range(args.classes)]]), torch.cat([real[1], labels]))}
    for name, pool in pools.items():
        if any(p is None for p in pool):
            continue
        synthetic = torch.cat(pool)
        sets[f"synthetic-{name}"] = (synthetic, labels)
        sets[f"real+{name}"] = (torch.cat([real[0], synthetic]), torch.cat([real[1], labels]))
    for kind in args.classifiers:
        for condition, train in sets.items():
            accuracy = fit_and_score(kind, train, (x["validation"], y["validation"]), (x["test"], y["test"]), seed,
                                     args.classes)
            rows.append({"seed": seed, "classifier": kind, "condition": condition, "accuracy": accuracy})
    return rows


def summarize(runs: pd.DataFrame, quality: pd.DataFrame) -> str:
    lines = []
    for kind, group in runs.groupby("classifier", sort=False):
        table = group.pivot(index="seed", columns="condition", values="accuracy")
        lines.append(f"\n## {kind}: test accuracy (%), mean ± std over {len(table)} seeds")
        for condition in table.columns:
            values = table[condition].dropna()
            line = f"{condition:24s} {100 * values.mean():5.1f} ± {100 * values.std():4.1f}"
            for reference in ("real", *(f"real+{c}" if condition.startswith("real+") else f"synthetic-{c}"
                                        for c in CONTROLS)):
                if reference in table and reference != condition and condition != "real":
                    paired = table[[condition, reference]].dropna()
                    if len(paired) > 1:
                        mean, low, high = paired_bootstrap_ci(paired[condition].to_numpy(), paired[reference].to_numpy())
                        line += f" | vs {reference}: {100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
            lines.append(line)
    kept = quality[~quality["refused"]]
    lines.append(f"\n## sample quality and chains (mean over classes and seeds; min-max over classes in brackets); "
                 f"pools refused (uninformative posterior): {int(quality['refused'].sum())} of {len(quality)}")
    columns = [k for k in (*QUALITY_KEYS, *CHAIN_KEYS) if k in kept]
    for name, group in kept.groupby("sampler", sort=False):
        per_class = group.groupby("label")[columns].mean()
        cells = [f"{k}={group[k].mean():.3g} [{per_class[k].min():.3g}, {per_class[k].max():.3g}]"
                 for k in columns if group[k].notna().any()]
        lines.append(f"{name:12s} " + " ".join(cells))
    return "\n".join(lines)


def plot_grid(shown: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(shown)
    figure, axes = plt.subplots(len(rows), 12, figsize=(12, 1.1 * len(rows)), squeeze=False)
    for axis_row, key in zip(axes, rows):
        samples, train = shown[key]
        nearest = torch.cdist(samples.flatten(1), train.flatten(1)).argmin(1)
        for j in range(6):
            axis_row[2 * j].imshow(samples[j, 0], cmap="gray", vmin=0, vmax=1)
            axis_row[2 * j + 1].imshow(train[nearest[j], 0], cmap="Blues", vmin=0, vmax=1)
        for axis in axis_row:
            axis.axis("off")
        axis_row[0].set_title(f"{key[0]} (digit {key[1]}): sample | nearest training image", fontsize=7, loc="left")
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def merge(prefixes: list[Path], out: Path) -> None:
    """One results set from runs on disjoint seeds (for example two processes on two cores)."""
    runs = pd.concat([pd.read_csv(p.with_suffix(".tsv"), sep="\t") for p in prefixes], ignore_index=True)
    quality = pd.concat([pd.read_csv(p.with_name(p.name + "_quality.tsv"), sep="\t") for p in prefixes],
                        ignore_index=True)
    if runs.duplicated(["seed", "classifier", "condition"]).any():
        raise SystemExit("the merged runs share seeds")
    runs.to_csv(out.with_suffix(".tsv"), sep="\t", index=False)
    quality.to_csv(out.with_name(out.name + "_quality.tsv"), sep="\t", index=False)
    # a run stopped between seeds has its TSVs (written after every seed) but no summary
    headers = [p.with_suffix(".txt").read_text().splitlines()[0] if p.with_suffix(".txt").exists() else
               f"# {p}: seeds {sorted(set(pd.read_csv(p.with_suffix('.tsv'), sep=chr(9))['seed']))} (stopped after them)"
               for p in prefixes]
    text = "\n".join(headers) + "\n" + summarize(runs, quality)
    out.with_suffix(".txt").write_text(text + "\n")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=20)
    parser.add_argument("--synthetic", type=int, default=200)
    parser.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")] if "," in s else list(range(int(s))),
                        default=list(range(10)), help="a count (0..N-1) or a comma list")
    parser.add_argument("--classifiers", type=lambda s: s.split(","), default=["mlp", "cnn"])
    parser.add_argument("--samplers", type=lambda s: s.split(","), default=list(SAMPLERS))
    parser.add_argument("--max-steps", type=int, default=3000, help="generator optimiser steps at most")
    parser.add_argument("--patience-steps", type=int, default=300,
                        help="generator: stop after this many steps without a lower training loss")
    parser.add_argument("--classes", type=int, default=10, help="digits 0..N-1 (fewer for a quick check)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_augmentation_digits"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--merge", type=Path, nargs="+", metavar="PREFIX",
                        help="combine the results of runs on disjoint seeds (their --out) into --out")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
    work = args.out.with_name(args.out.name + "_work")
    runs, quality, started = [], [], time.time()
    for seed in args.seeds:
        x, y, pools, seed_quality, shown = run_seed(seed, args, images, digits.target, work)
        quality += seed_quality
        runs += evaluate(seed, args, x, y, pools)
        if shown:
            plot_grid(shown, args.out.with_suffix(".png"))
        pd.DataFrame(runs).to_csv(args.out.with_suffix(".tsv"), sep="\t", index=False)
        pd.DataFrame(quality).to_csv(args.out.with_name(args.out.name + "_quality.tsv"), sep="\t", index=False)
        print(f"seed {seed} done ({time.time() - started:.0f} s)", flush=True)
    text = (f"# digits augmentation: {args.train} training images per class, {args.synthetic} synthetic per class, "
            f"seeds {args.seeds}, "
            f"generators: training-loss selection, {args.max_steps} steps at most, patience {args.patience_steps} steps\n" + summarize(pd.DataFrame(runs), pd.DataFrame(quality)))
    args.out.with_suffix(".txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
