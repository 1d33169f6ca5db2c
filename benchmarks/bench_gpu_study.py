"""Stage timings of the thesis-scale augmentation protocol on one GPU, on synthetic volumes of
thesis size (84×104×89), with the functions a study calls (issue #10).

Stages, each timed on its own:
1. one generator per class: RHVAE with thesis Table 1.13/1.14 settings on ``--train-per-class``
   images (train-50), ``--generator-epochs`` epochs (s/epoch is what to multiply by the epochs
   that early stopping takes);
2. sampling ``--synthetic`` images per class: geometry-aware HMC (300 steps, 15 leapfrog steps),
   decoding into the float16 stack studies stream from, and writing the labelled NIfTI derivative,
   timed per image on the first ``--nifti`` images (10 000 NIfTIs per class outgrow a 64 GB disk);
3. one CNN run (Conv5_FC3) on real + all synthetic images, ``--cnn-epochs`` epochs, streamed from
   disk through DataLoader workers, in fp32 and in bf16 autocast, side by side (a ratio);
4. the same CNN step on the CPU against the GPU, on one batch of real images (a ratio);
5. memory: peak resident memory of this process and its workers after each stage, and peak GPU
   memory; with
   ``--memory-subjects 1000`` a stream over a 1000-subject real stack (one CNN epoch and the
   memorization audit) is added, to check the 16 GB RAM budget.

The images are smooth random fields with a class-dependent dark ellipsoid, so they cost what MRI
volumes cost; no accuracy is measured. The whole-study time printed at the end is computed from
the measured stages (stated formula), not run end to end.

Run: python benchmarks/bench_gpu_study.py --device cuda [--synthetic 10000] [--out /tmp/bench]
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from medaug.data.volumes import Volumes, VolumeFile, write_volume_file
from medaug.generative.config import GeneratorConfig
from medaug.generative.models import build_model
from medaug.generative.trainer import TrainerConfig, train_generator
from medaug.nets.classifiers import Conv5FC3
from medaug.sampling.samplers import build_sampler
from medaug.sampling.synthetic_dataset import pool_file, write_synthetic
from medaug.sampling.quality import copy_audit
from medaug.study.network_training import ClassifierTraining, train_classifier
from medaug.study.training_sets import build_training_set
from scale_tools import PeakMemory, volumes

THESIS_GENERATOR = dict(model="rhvae", network="mlp", latent_dim=10, hidden=(500, 500, 400),
                        options=dict(metric_hidden=400, leapfrog_steps=3, step_size=0.001, temperature=1.5,
                                     regularization=0.01, sqrt_beta_zero=0.3))
HMC = dict(steps=300, leapfrog_steps=15, step_size=0.01)


MEMORY: PeakMemory | None = None


def peak_rss_gb() -> float:
    return round(MEMORY.peak, 2)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stack(path: Path, n: int, label: int, size, seed: int) -> VolumeFile:
    return write_volume_file(path, volumes(n, label, size, seed), (n, 1, *size))


BEGIN = time.perf_counter()


def stage(name: str) -> None:
    print(f"[{time.perf_counter() - BEGIN:7.1f} s] {name}", flush=True)


def timed(function, device):
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, nargs=3, default=(84, 104, 89))
    parser.add_argument("--train-per-class", type=int, default=50)
    parser.add_argument("--val-per-class", type=int, default=12)
    parser.add_argument("--generator-epochs", type=int, default=100)
    parser.add_argument("--synthetic", type=int, default=10_000, help="synthetic images per class")
    parser.add_argument("--nifti", type=int, default=1000,
                        help="synthetic images per class also written as NIfTI (all go to the float16 stack)")
    parser.add_argument("--cnn-epochs", type=int, default=1)
    parser.add_argument("--cnn-synthetic", type=int, default=0, help="synthetic images per class in the CNN's "
                        "training set (default: all); its time scales with the images per epoch")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the CNN")
    parser.add_argument("--memory-subjects", type=int, default=0, help="add the 1000-subject memory check")
    parser.add_argument("--out", type=Path, default=Path("/tmp/medaug_gpu_bench"))
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    global MEMORY
    MEMORY = PeakMemory()
    device = torch.device(args.device)
    size = tuple(args.size)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    figures = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "size": size, "synthetic_per_class": args.synthetic}

    # data: train-50 per class, streamed from float32 stacks
    train = {c: stack(args.out / f"train_{c}.npy", args.train_per_class, c, size, 10 + c) for c in (0, 1)}
    validation = {c: stack(args.out / f"val_{c}.npy", args.val_per_class, c, size, 20 + c) for c in (0, 1)}

    stage("generators")
    generators, per_epoch, writes = {}, [], []
    for c in (0, 1):
        torch.manual_seed(c)
        model = build_model(GeneratorConfig(input_shape=(1, *size), **THESIS_GENERATOR))
        steps = args.generator_epochs * -(-args.train_per_class // 25)  # the epochs as optimiser steps
        trainer = TrainerConfig(learning_rate=1e-5, batch_size=25, max_steps=steps, patience_steps=steps, seed=c,
                                device=str(device))
        out = args.out / "generators" / str(c)
        _, seconds = timed(lambda: train_generator(model, Volumes.of(train[c]).load(), Volumes.of(validation[c]).load(),
                                                   out, trainer), device)
        generators[c] = out / "best"
        epochs = np.loadtxt(out / "training_log.csv", delimiter=",", skiprows=1, ndmin=2)
        per_epoch.append(float(epochs[:, 4].mean()))
        writes.append(seconds - float(epochs[:, 4].sum()))
    figures.update(generator_s_per_epoch=per_epoch, generator_build_and_write_s=writes)
    figures["rss_gb_after_generators"] = peak_rss_gb()
    print(f"generator training: {np.mean(per_epoch):.3f} s/epoch per class ({args.generator_epochs} epochs, "
          f"{args.train_per_class} images); building the model and writing best/ + checkpoint "
          f"{np.mean(writes):.1f} s per class", flush=True)

    stage("sampling")
    from medaug.generative.persistence import load_generator

    pools, chains, decode_stack, nifti = {}, [], [], []
    for c in (0, 1):
        model = load_generator(generators[c], map_location=device)
        sampler = build_sampler("rhvae-hmc", **HMC).fit(model, Volumes.of(train[c]).load().to(device))
        stage(f"HMC chains, class {c}")
        (latents, diagnostics), seconds = timed(lambda: sampler.draw(args.synthetic, seed=c), device)
        chains.append(seconds)
        folder = args.out / "synthetic"
        label = ("CN", "AD")[c]
        shown = min(args.nifti, args.synthetic)
        _, seconds = timed(lambda: write_synthetic(latents[:shown].cpu(), sampler.decode(latents[:shown], 128), folder,
                                                   label=label, model_dir=generators[c], sampler=sampler, seed=c,
                                                   workers=16), device)
        nifti.append(seconds / shown)
        stage(f"decode into the float16 stack, class {c}")
        _, seconds = timed(lambda: write_volume_file(pool_file(folder, label, c), sampler.decode(latents, 128),
                                                     (args.synthetic, 1, *size), dtype="float16"), device)
        decode_stack.append(seconds)
        pools[c] = VolumeFile(pool_file(folder, ("CN", "AD")[c], c))
        print(f"class {c}: HMC chains {chains[-1]:.1f} s (acceptance {diagnostics['acceptance_rate']:.2f}), "
              f"decode + float16 stack {decode_stack[-1]:.1f} s, NIfTI + sidecar {1000 * nifti[-1]:.1f} ms/image "
              f"(16 threads, timed on {shown})", flush=True)
    figures.update(hmc_chains_s=chains, decode_stack_s=decode_stack, nifti_s_per_image=nifti,
                   rss_gb_after_sampling=peak_rss_gb())

    stage("CNN")
    real = Volumes.concat([train[0], train[1]])
    labels = torch.cat([torch.zeros(args.train_per_class), torch.ones(args.train_per_class)]).long()
    val = Volumes.concat([validation[0], validation[1]])
    val_labels = torch.cat([torch.zeros(args.val_per_class), torch.ones(args.val_per_class)]).long()
    training_set = build_training_set(real, labels, "real+synthetic", synthetic=pools,
                                      synthetic_per_class=args.cnn_synthetic or args.synthetic)
    cnn = {}
    for precision in ("fp32", "bf16"):
        settings = ClassifierTraining(epochs=args.cnn_epochs, batch_size=8, device=str(device),
                                      mixed_precision=precision == "bf16", loader_workers=args.workers)
        torch.manual_seed(0)
        network = Conv5FC3((1, *size))
        _, seconds = timed(lambda: train_classifier(network, (training_set.images, training_set.labels),
                                                    (val, val_labels), settings), device)
        cnn[precision] = seconds / args.cnn_epochs
        print(f"CNN {precision}: {cnn[precision]:.1f} s/epoch on {len(training_set.images)} images "
              f"({len(training_set.images) / cnn[precision]:.0f} images/s)", flush=True)
    figures.update(cnn_s_per_epoch=cnn, cnn_images=len(training_set.images), rss_gb_after_cnn=peak_rss_gb())
    if device.type == "cuda":
        figures["gpu_peak_gb"] = torch.cuda.max_memory_allocated(device) / 1024 ** 3

    stage("CPU against GPU")
    batch = Volumes.of(train[0]).batch(np.arange(8))
    target = torch.zeros(8, dtype=torch.long)
    step = {}
    for where in dict.fromkeys(["cpu", str(device)]):
        torch.manual_seed(0)
        network = Conv5FC3((1, *size)).to(where)
        optimizer = torch.optim.Adam(network.parameters())
        x, y = batch.to(where), target.to(where)

        def one_step():
            loss = torch.nn.functional.cross_entropy(network(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        one_step()
        _, seconds = timed(lambda: [one_step() for _ in range(3)], torch.device(where))
        step[where] = seconds / 3
    figures["cnn_step_s"] = step
    print("CNN step (batch 8): " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in step.items()), flush=True)

    stage("memory check")  # one streamed CNN epoch over N subjects, and the memorization audit
    if args.memory_subjects:
        half = args.memory_subjects // 2
        big = Volumes.concat([stack(args.out / f"big_{c}.npy", half, c, size, 30 + c) for c in (0, 1)])
        big_labels = torch.cat([torch.zeros(half), torch.ones(half)]).long()
        settings = ClassifierTraining(epochs=1, batch_size=8, device=str(device), mixed_precision=True,
                                      loader_workers=args.workers)
        torch.manual_seed(0)
        _, seconds = timed(lambda: train_classifier(Conv5FC3((1, *size)), (big, big_labels), (val, val_labels),
                                                    settings), device)
        reference = big.take(big_labels == 1).load()
        _, audit_seconds = timed(lambda: copy_audit(Volumes.of(pools[1]).batches(64), reference), device)  # CPU float64
        figures.update(memory_subjects=args.memory_subjects, memory_cnn_epoch_s=seconds, audit_s=audit_seconds,
                       rss_gb_after_1000_subjects=peak_rss_gb())
        print(f"{args.memory_subjects} subjects: CNN epoch {seconds:.1f} s, audit of {len(pools[1])} synthetic "
              f"images against {len(reference)} {audit_seconds:.1f} s, peak RSS {peak_rss_gb():.2f} GB", flush=True)

    figures["peak_rss_gb"] = peak_rss_gb()
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
