"""Longitudinal VAE with flows (thesis ch. 6) side by side with a per-visit VAE (same networks,
visits independent), on rotated-digit sequences (``--data digits``, 8 visits, 16×16: the analogue
of rotMNIST) or on the simulated example cohort (``--data cohort``: CN and AD, yearly M000-M036
with 20% of follow-ups missing, 4 mm box around the ventricles, :mod:`simulated_sequences`):

1. negative log joint likelihood of the test sequences' observed visits (IS, 100 samples; Table 6.1
   ordering): per-visit VAE, ours with N(0, I) prior, with VAMP prior, with IAF posterior;
2. imputation MSE on hidden visits at missing rates 0.2 / 0.4 / 0.6 of the observed follow-ups
   (models trained with the same rate), against carry-forward and linear interpolation in the
   per-visit VAE's latent space;
3. extrapolation MSE on the observed visits after the first k, k = 1 … T − 1.

Writes benchmarks/results_longitudinal[_cohort_metrics].txt (and, for digits,
benchmarks/figures/longitudinal_digits.png).
Run: python benchmarks/bench_longitudinal.py [--data digits|cohort] [--epochs 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib
import torch

from medaug.simulation.rotated_digits import rotated_digit_sequences
from medaug.generative.config import GeneratorConfig
from medaug.longitudinal.baselines import carry_forward, linear_fill
from medaug.longitudinal.flow_vae import (
    FlowTraining, FlowVAEConfig, LongitudinalFlowVAE, per_visit_log_likelihood, train_flow_vae)
from medaug.longitudinal.sequences import Sequences, drop_visits, visit_grid

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
LATENT = 8  # the thesis uses 16 for rotMNIST; each inverse flow costs one MADE pass per latent dimension


# per data set: frame VAE options and batch size
FRAMES = {"digits": (dict(hidden=(256, 1024), pseudo_inputs=100), 64),  # pseudo_inputs: for the vamp prior
          "cohort": (dict(hidden=(500, 400), pseudo_inputs=50, likelihood="gaussian", gaussian_sigma=0.1), 16)}


def hide(values, mask, rate, seed):
    """The observed-visit mask with each observed follow-up hidden at the given rate."""
    sequences = Sequences([str(i) for i in range(len(values))], values, torch.zeros(mask.shape), mask, None)
    return drop_visits(sequences, rate, seed)[0].mask


def fit(train, validation, epochs, data, *, prior="vae", posterior="gaussian", per_visit=False, seed=0):
    frame, batch_size = FRAMES[data]
    frame = dict(frame)
    pseudo_inputs = frame.pop("pseudo_inputs")
    generator = GeneratorConfig(input_shape=tuple(train[0].shape[2:]), model=prior, latent_dim=LATENT,
                                options={"pseudo_inputs": pseudo_inputs} if prior == "vamp" else {}, **frame)
    config = FlowVAEConfig(generator, visits=train[0].shape[1], posterior=posterior, made_hidden=64)
    milestones = tuple(m for m in (epochs // 2, 3 * epochs // 4) if m > 0)
    settings = FlowTraining(epochs=epochs, warmup_epochs=epochs if per_visit else max(1, epochs // 10),
                            batch_size=batch_size, milestones=milestones, seed=seed)
    torch.manual_seed(seed)
    return train_flow_vae(LongitudinalFlowVAE(config), train, validation, settings)[0]


def mse(predicted, truth, where):
    return float(((predicted - truth) ** 2).flatten(2).mean(2)[where].mean())


def load(args) -> tuple[dict, str]:
    """(values, observed mask) per split, and the line describing the data."""
    if args.data == "digits":
        values, _ = rotated_digit_sequences(visits=8, size=16)
        order = torch.randperm(len(values), generator=torch.Generator().manual_seed(args.seed))
        splits = {name: (values[rows], torch.ones(values[rows].shape[:2], dtype=torch.bool))
                  for name, rows in (("train", order[:800]), ("validation", order[800:1000]), ("test", order[1000:]))}
        return splits, "rotated digits: 800 / 200 / 797 sequences of 8 visits, 16×16"
    from simulated_sequences import simulated_images, template_box

    truth, images = simulated_images(("CN", "AD"), args.subjects, seed=args.seed, jobs=args.threads)
    grid = visit_grid(truth, images, visits=4, interval_years=1.0)
    order = torch.randperm(len(grid.participants), generator=torch.Generator().manual_seed(args.seed))
    n_test = len(order) // 6
    parts = {"train": order[2 * n_test:], "validation": order[:n_test], "test": order[n_test:2 * n_test]}
    splits = {name: (grid.values[rows], grid.mask[rows]) for name, rows in parts.items()}
    return splits, (f"simulated cohort: {args.subjects} CN + {args.subjects} AD subjects, {len(truth)} images, yearly "
                    f"M000-M036 (20% of follow-ups missing), 4 mm box {template_box()[0]}, "
                    f"{len(parts['train'])} / {len(parts['validation'])} / {len(parts['test'])} subjects")


def latent_baseline(model, values, mask):
    """Per-visit VAE codes (posterior means) filled linearly across missing visits, then decoded."""
    with torch.no_grad():
        codes = model.frame.encoder(values.flatten(0, 1))[0].view(*mask.shape, -1)
        return model.decode(linear_fill(codes, mask))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default="digits", choices=("digits", "cohort"))
    parser.add_argument("--subjects", type=int, default=64, help="cohort: subjects per diagnosis")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    splits, described = load(args)
    (train, train_mask), (validation, validation_mask), (test, test_mask) = (
        splits["train"], splits["validation"], splits["test"])
    visits = test.shape[1]
    lines = [f"{described}; latent {LATENT}, MADE 64 units, {args.epochs} epochs, seed {args.seed}, "
             f"{args.threads} threads", ""]
    fit_on = lambda masks, **options: fit((train, masks[0]), (validation, masks[1]), args.epochs, args.data,  # noqa: E731
                                          seed=args.seed, **options)
    observed = (train_mask, validation_mask)
    models = {"per-visit VAE": fit_on(observed, per_visit=True), "ours N(0, I)": fit_on(observed),
              "ours VAMP": fit_on(observed, prior="vamp"), "ours IAF": fit_on(observed, posterior="iaf")}
    lines.append("1. negative log joint likelihood of the test sequences' observed visits "
                 "(nats per sequence, 100 IS samples)")
    for name, model in models.items():
        if name == "per-visit VAE":
            nll = -per_visit_log_likelihood(model.frame, test, test_mask, samples=100)
        else:
            nll = -model.joint_log_likelihood(test, test_mask, samples=100)
        lines.append(f"   {name:<14} {float(nll.mean()):8.2f} ± {float(nll.std()):.2f}")

    lines += ["", "2. imputation MSE on hidden visits (per voxel), models trained at the same missing rate",
              f"   {'rate':<5} {'ours (Alg. 7)':>14} {'carry-forward':>14} {'latent linear':>14}"]
    baseline = models["per-visit VAE"]
    examples = {}
    for rate in (0.2, 0.4, 0.6):
        masks = [hide(v, m, rate, args.seed + i) for i, (v, m) in enumerate(splits.values())]
        model = fit_on(masks[:2])
        kept = masks[2]
        imputed, _ = model.impute(test, kept, draws=5, seed=args.seed)
        hidden = test_mask & ~kept
        lines.append(f"   {rate:<5} {mse(imputed, test, hidden):14.4f} {mse(carry_forward(test, kept), test, hidden):14.4f} "
                     f"{mse(latent_baseline(baseline, test, kept), test, hidden):14.4f}")
        examples[rate] = (kept[:3], imputed[:3])

    lines += ["", "3. extrapolation MSE on the observed visits after the first k (models trained on all observed visits)",
              f"   {'k':<3} {'ours (Alg. 7)':>14} {'carry-forward':>14} {'latent linear':>14}"]
    ours = models["ours N(0, I)"]
    for k in range(1, visits):
        mask = test_mask.clone()
        mask[:, k:] = False
        later = test_mask & ~mask
        predicted, _ = ours.impute(test, mask, draws=5, seed=args.seed)
        lines.append(f"   {k:<3} {mse(predicted, test, later):14.4f} {mse(carry_forward(test, mask), test, later):14.4f} "
                     f"{mse(latent_baseline(baseline, test, mask), test, later):14.4f}")
    lines += ["", f"total time {time.perf_counter() - started:.0f} s"]

    if args.data == "digits":
        figure(ours, test, examples[0.4], HERE / "figures" / "longitudinal_digits.png", seed=args.seed)
    text = "\n".join(lines)
    print(text)
    (HERE / ("results_longitudinal.txt" if args.data == "digits" else "results_longitudinal_cohort_metrics.txt")
     ).write_text(text + "\n")


def figure(model, test, example, path, seed):
    """Rows: 4 sequences from the prior; 3 test sequences with 40% visits hidden and their imputation."""
    samples = model.sample(4, seed=seed)
    mask, imputed = example
    rows = [samples[i] for i in range(4)]
    for i in range(3):
        rows += [test[i] * mask[i, :, None, None, None] + 0.25 * ~mask[i, :, None, None, None], imputed[i]]
    fig, axes = plt.subplots(len(rows), 8, figsize=(8, len(rows) * 1.05))
    for r, row in enumerate(rows):
        for c in range(8):
            axes[r, c].imshow(row[c, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r, c].axis("off")
        label = "prior" if r < 4 else ("observed" if (r - 4) % 2 == 0 else "imputed")
        axes[r, 0].set_title(label, fontsize=7, loc="left")
    fig.suptitle("Longitudinal VAE with flows on rotated digits (grey = hidden visit)", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
