"""Longitudinal VAE with flows on a simulated AD cohort: do generated AD trajectories show the
ground truth's atrophy (ventricles growing with age)?

Cohort: medaug example cohort, AD only (``--label CN``: the control, where ventricles grow with
age alone), yearly sessions M000-M036 with 20% of follow-ups missing, aligned by the simulation's
ground-truth transform on a 4 mm box (:mod:`simulated_sequences`).
Ventricle proxy: Σ over the template ventricle region (dilated twice) of (1 − intensity) × voxel mL;
checked on the real images against the simulation's ventricle expansion and, within subjects,
against the change of the ground-truth ventricle volume (Pearson r).
Reports the proxy per visit for real, generated and extrapolated (first visit of held-out subjects
→ later visits, Alg. 7) sequences, the per-subject slope of the generated proxies, the darkness
outside the ventricle region (a control for a global drift), and a PNG of generated trajectories.
Generated sequences start from z_0 ~ the N(0, I) prior (Eq. 6.3) or from a Gaussian mixture fitted
on the training subjects' first-visit codes (``--components``), then follow the flows.

``--model feature-mapping``: the chapter 5 model instead (what ``medaug longitudinal fit --model
feature-mapping`` trains): a VAE on the training subjects' images (``--vae-steps``), the trajectory
model on its posterior means, new subjects with λ from a mixture of the training λ means and η, τ
from their priors, extrapolation by the posterior-mean trajectory of the first visit; decoded by
the VAE (its reconstructions of the real sequences are a row of their own: the VAE's share of
the error).

Run: python benchmarks/bench_longitudinal_cohort.py [--subjects 96] [--epochs 300] [--threads 1] [--label CN]
     [--model feature-mapping --vae-steps 3000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch
from scipy import ndimage

from medaug.simulation.anatomy import load_template_anatomy
from medaug.simulation.primitives import grid_points, sample_volume
from medaug.generative.config import GeneratorConfig
from medaug.generative.models import build_model
from medaug.generative.trainer import TrainerConfig, train_generator
from medaug.longitudinal.flow_vae import FlowTraining, FlowVAEConfig, LongitudinalFlowVAE, train_flow_vae
from medaug.longitudinal.sequences import build_sequences, visit_grid
from medaug.longitudinal.trajectory import (
    FeatureTrajectoryModel, TrajectoryConfig, TrajectorySampler, train_trajectory_model)
from medaug.sampling.sampler import posterior_means
from medaug.sampling.samplers import build_sampler
from simulated_sequences import VOXEL, simulated_images, template_box

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent


def ventricle_region(shape, affine):
    anatomy = load_template_anatomy()
    ventricles = sample_volume(anatomy.sampled[1:2], anatomy.affine, grid_points(shape, affine)).view(shape).numpy()
    return ndimage.binary_dilation(ventricles > 0.5, iterations=2)


def proxy(images: torch.Tensor, region: np.ndarray) -> torch.Tensor:
    """Σ_region (1 − intensity) × voxel mL for images (..., 1, X, Y, Z)."""
    darkness = (1.0 - images[..., 0, :, :, :])[..., torch.as_tensor(region)]
    return darkness.sum(-1) * VOXEL**3 / 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--effect", type=float, default=1.0, help="AD effect of the simulation (1 = its default)")
    parser.add_argument("--components", type=int, default=4, help="GMM components of the first-visit codes")
    parser.add_argument("--label", default="AD", choices=("AD", "CN"), help="CN: the control (ageing alone)")
    parser.add_argument("--model", default="flow-vae", choices=("flow-vae", "feature-mapping"))
    parser.add_argument("--vae-steps", type=int, default=3000, help="feature-mapping: VAE optimiser steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    shape, affine = template_box()
    region = ventricle_region(shape, affine)
    truth, values = simulated_images((args.label,), args.subjects, seed=args.seed, jobs=args.threads,
                                     effect=args.effect)
    simulated = time.perf_counter() - started
    real_proxy = proxy(values, region).numpy()
    r = np.corrcoef(real_proxy, truth["ventricle_expansion"])[0, 1]
    change = truth.assign(proxy=real_proxy).groupby("participant_id")[["proxy", "ventricle_volume_ml"]].transform(
        lambda column: column - column.iloc[0])
    r_change = np.corrcoef(change["proxy"], change["ventricle_volume_ml"])[0, 1]

    grid = visit_grid(truth, values, visits=4, interval_years=1.0)
    order = np.random.default_rng(args.seed).permutation(len(grid.participants))
    n_val = max(4, len(order) // 6)
    train_idx, val_idx = torch.as_tensor(order[2 * n_val:]), torch.as_tensor(order[:n_val])
    test_idx = torch.as_tensor(order[n_val:2 * n_val])
    test_mask = grid.mask[test_idx]
    vae = GeneratorConfig(input_shape=(1, *shape), model="vae", latent_dim=8, hidden=(500, 400), likelihood="gaussian",
                          gaussian_sigma=0.1)
    if args.model == "feature-mapping":
        sets, generated_sets = feature_mapping(truth, values, grid, (train_idx, val_idx, test_idx), vae, args)
    else:
        sets, generated_sets = flow_vae(values, grid, (train_idx, val_idx, test_idx), vae, args)
    sets = {f"real {args.label} (all subjects)": (grid.values, grid.mask), **sets}
    def per_visit(p, mask=None):
        mask = torch.ones(p.shape, dtype=torch.bool) if mask is None else mask
        return [float(p[:, l][mask[:, l]].mean()) if mask[:, l].any() else float("nan") for l in range(p.shape[1])]

    def slope(series):
        return float(np.polyfit(np.arange(len(series)), series, 1)[0])

    # control: darkness outside the ventricle region (a global darkening or blur moves it too)
    outside = lambda images: (1.0 - images[..., 0, :, :, :])[..., torch.as_tensor(~region)].mean(-1)  # noqa: E731
    series = {name: (per_visit(proxy(images, region), mask), per_visit(outside(images), mask))
              for name, (images, mask) in sets.items()}
    visits = np.arange(grid.mask.shape[1])
    per_subject = {name: np.polyfit(visits, proxy(images, region).numpy().T, 1)[0]  # slope of each generated subject
                   for name, images in generated_sets.items()}
    truth_slope = truth.assign(years=truth["session_id"].str[5:].astype(int) / 12).groupby("participant_id").apply(
        lambda g: np.polyfit(g["years"], g["ventricle_volume_ml"], 1)[0] if len(g) > 1 else np.nan,
        include_groups=False).mean()
    fmt = lambda s: " ".join(f"{v:6.2f}" for v in s)  # noqa: E731
    lines = [
        f"simulated {args.label} cohort: {args.subjects} subjects, yearly M000-M036, 20% follow-ups missing, "
        f"{len(truth)} images at {VOXEL:.0f} mm, MNI box {shape} (oracle alignment), AD effect {args.effect}, "
        f"seed {args.seed}",
        f"split: {len(train_idx)} train / {len(val_idx)} validation / {len(test_idx)} held-out subjects; "
        f"model {args.model}; {args.epochs} epochs" + (f", VAE {args.vae_steps} steps" if args.model == "feature-mapping"
                                                      else "") + f"; {args.threads} threads",
        f"ground truth: ventricle volume rises {truth_slope:.2f} mL/year on average (simulation parameters)",
        f"ventricle proxy on real images vs the ground-truth expansion: Pearson r = {r:.3f}; change since "
        f"baseline vs ground-truth volume change: r = {r_change:.3f}",
        "",
        f"{'ventricle proxy (mL) per visit':44s}  M000   M012   M024   M036   slope/visit",
        *[f"{name:44s}{fmt(v)}   {slope(v):+.3f}" for name, (v, _) in series.items()],
        "per generated subject, slope of the proxy (mL/visit), mean ± standard error: "
        + ", ".join(f"{v.mean():+.3f} ± {v.std(ddof=1) / np.sqrt(len(v)):.3f} ({k})" for k, v in per_subject.items()),
        "",
        "control: mean darkness (1 − intensity) outside the ventricle region, per visit",
        *[f"{name:44s}{' '.join(f'{x:.4f}' for x in c)}   {slope(c):+.4f}" for name, (_, c) in series.items()],
        "",
        f"simulation + alignment {simulated:.0f} s, total {time.perf_counter() - started:.0f} s",
    ]
    text = "\n".join(lines)
    print(text)
    suffix = (("" if args.model == "flow-vae" else "_feature_mapping") + ("" if args.label == "AD" else f"_{args.label}")
              + ("" if args.seed == 0 else f"_seed{args.seed}"))
    (HERE / f"results_longitudinal_cohort{suffix}.txt").write_text(text + "\n")
    generated = list(generated_sets.values())[-1]
    plot(generated[:4], grid.values[test_idx][:2], sets["held-out, extrapolated from M000"][0][:2], test_mask[:2],
         HERE / "figures" / f"longitudinal_cohort{suffix}.png", args.model)


def flow_vae(values, grid, split, vae, args):
    """Ch. 6: the flow-based VAE; generated sets from the prior and from a GMM of first-visit codes."""
    train_idx, val_idx, test_idx = split
    config = FlowVAEConfig(vae, visits=4, made_hidden=64)
    settings = FlowTraining(epochs=args.epochs, warmup_epochs=10, batch_size=16,
                            milestones=(args.epochs // 2, 3 * args.epochs // 4), seed=args.seed)
    torch.manual_seed(args.seed)
    model, _ = train_flow_vae(LongitudinalFlowVAE(config), (grid.values[train_idx], grid.mask[train_idx]),
                              (grid.values[val_idx], grid.mask[val_idx]), settings)
    generated = model.sample(200, seed=args.seed)
    first_visits = grid.values[train_idx][:, 0][grid.mask[train_idx][:, 0]]
    start = build_sampler("gmm", n_components=args.components).fit(model.frame, first_visits)
    from_codes = model.sample(200, seed=args.seed, start=start)
    first_only = grid.mask[test_idx].clone()
    first_only[:, 1:] = False
    extrapolated, _ = model.impute(grid.values[test_idx], first_only, draws=10, seed=args.seed)
    sets = {"generated, z_0 ~ prior (200)": (generated, None),
            f"generated, z_0 ~ GMM({args.components}) of first-visit codes": (from_codes, None),
            "held-out, real": (grid.values[test_idx], grid.mask[test_idx]),
            "held-out, extrapolated from M000": (extrapolated, grid.mask[test_idx])}
    return sets, {"z_0 ~ prior": generated, "z_0 ~ GMM": from_codes}


def feature_mapping(truth, values, grid, split, vae, args):
    """Ch. 5: a VAE on the training subjects' images, the trajectory model on its features; 200
    new subjects (λ ~ GMM of the training λ means, baseline ages among the training subjects') and
    the held-out subjects extrapolated from their first visit, at yearly visits."""
    train_idx, val_idx, test_idx = split
    chosen = lambda index: truth["participant_id"].isin([grid.participants[i] for i in index.tolist()]).to_numpy()  # noqa: E731
    train_rows, val_rows, test_rows = chosen(train_idx), chosen(val_idx), chosen(test_idx)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        frame = train_generator(build_model(vae), values[train_rows], values[val_rows], folder,
                                TrainerConfig(learning_rate=1e-3, batch_size=16, max_steps=args.vae_steps,
                                              patience_steps=args.vae_steps, seed=args.seed))["model"].eval()
    features = posterior_means(frame, values)
    train, scale = build_sequences(truth[train_rows], features[train_rows], max_visits=4)
    validation, _ = build_sequences(truth[val_rows], features[val_rows], scale, max_visits=4)
    torch.manual_seed(args.seed)
    model, _ = train_trajectory_model(FeatureTrajectoryModel(TrajectoryConfig(feature_dim=features.shape[1])), train,
                                      validation, epochs=args.epochs, batch_size=16, seed=args.seed)
    years = np.arange(4)[None, :]

    def decoded(features):
        with torch.no_grad():
            return frame.decode(features.flatten(0, 1)).view(*features.shape[:2], 1, *values.shape[2:])

    baseline = train.rows[train.rows["visit"] == 0]["age"].to_numpy()
    ages = np.random.default_rng(args.seed).choice(baseline, 200)
    times = torch.as_tensor(scale.to_time(ages[:, None] + years), dtype=torch.float32)
    sampler = TrajectorySampler(model, args.components).fit(train, args.seed)
    generated = decoded(sampler.new_subjects(200, times, args.seed))
    held_out = truth[test_rows]
    first = held_out.groupby("participant_id", sort=False).head(1)
    first_visits, _ = build_sequences(first, features[test_rows][held_out.index.isin(first.index)], scale)
    on_grid = [grid.participants.index(p) for p in first_visits.participants]  # their grid slots' ages
    times = torch.as_tensor(scale.to_time(grid.baseline_age[on_grid][:, None] + years), dtype=torch.float32)
    predicted = decoded(model.predict(first_visits, times))
    extrapolated = predicted[[on_grid.index(i) for i in test_idx.tolist()]]  # in the order of test_idx
    reconstructed = decoded(posterior_means(frame, grid.values.flatten(0, 1)).view(*grid.values.shape[:2], -1))
    sets = {"VAE reconstructions of the real sequences": (reconstructed, grid.mask),
            f"generated, λ ~ GMM({args.components}) (200)": (generated, None),
            "held-out, real": (grid.values[test_idx], grid.mask[test_idx]),
            "held-out, extrapolated from M000": (extrapolated, grid.mask[test_idx])}
    return sets, {"λ ~ GMM": generated}


def plot(generated, real, extrapolated, mask, path, model):
    """Axial slices through the ventricles along the 4 visits."""
    z = generated.shape[-1] // 2 + 2
    rows = [(f"generated {i + 1}", generated[i]) for i in range(len(generated))]
    for i in range(len(real)):
        rows += [(f"held-out {i + 1} (real)", real[i] * mask[i, :, None, None, None, None]),
                 (f"held-out {i + 1} from M000", extrapolated[i])]
    fig, axes = plt.subplots(len(rows), 4, figsize=(6, 1.6 * len(rows)))
    for r, (name, sequence) in enumerate(rows):
        for c in range(4):
            axes[r, c].imshow(np.rot90(sequence[c, 0, :, :, z].numpy()), cmap="gray", vmin=0, vmax=1)
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title(f"M{12 * c:03d}", fontsize=8)
        axes[r, 0].text(0, -2, name, fontsize=7)
    fig.suptitle(f"SYNTHETIC longitudinal trajectories ({model}), axial slice", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
