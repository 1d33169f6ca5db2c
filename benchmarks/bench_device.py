"""One prepared device script (issue 33): each GPU change timed beside what it replaces, in one run,
then the thesis protocol's end-to-end time computed from the measured stages.

1. RHVAE training step (thesis Table 1.13 MLP, d = 10, batch 25, Adam 1e-5) in fp32 and under
   bf16 autocast (``mixed_precision``; the metric stays in fp32): ms per step, peak memory, and
   whether the bf16 step ran (it failed in the Cholesky factor before the metric was kept in fp32).
2. Geometry-aware sampling, the thesis's job (``--draw`` images, 300 HMC steps, 15 leapfrog steps)
   from an RHVAE whose metric holds 50 training codes: seconds per draw; and its chain loop alone
   for two classes, eager against ``torch.compile`` of the trajectory and acceptance (``compile:
   true``), each class's chains one after another against both classes in one batch
   (``classes_together: true``).
3. CNN runs (Conv5_FC3, batch 8, ``--cnn-images`` random images, ``--cnn-epochs`` epochs) one at a
   time against ``--at-once`` runs in parallel processes (what ``executor: {tasks_at_once}`` does):
   images per second in total.
4. The thesis protocol from these rates: two generators trained for ``--generator-epochs`` epochs on
   50 images, 10 000 synthetic images per class, 20 CNN runs of the baseline (100 real training
   images) and of the augmented set (+ 20 000 synthetic), ``--protocol-cnn-epochs`` epochs each,
   ``--at-once`` runs at a time. Printed with every assumption; the goal is under one hour on one H200.

Run (an H200, within 8 minutes): python benchmarks/bench_device.py --device cuda --out /tmp/device
At toy size on the CPU (the test): python benchmarks/bench_device.py --toy --out /tmp/device
Results: ``OUT/device.json`` and ``OUT/device.txt``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import time
from pathlib import Path

import torch

from medaug.compute import autocast, resolve_device
from medaug.generative.config import GeneratorConfig
from medaug.generative.metric import Metric, StackedMetrics, lower_factors
from medaug.generative.models import build_model
from medaug.nets.classifiers import Conv5FC3
from medaug.sampling.hmc import hmc
from medaug.sampling.samplers import build_sampler
from medaug.study.network_training import ClassifierTraining, train_classifier

THESIS = {"size": (84, 104, 89), "cnn_size": (84, 104, 89), "latent_dim": 10, "hidden": (), "batch": 25,
          "train_images": 50, "steps": 300, "leapfrog_steps": 15}
TOY = {"size": (8, 10, 8), "cnn_size": (16, 16, 16), "latent_dim": 3, "hidden": (32,), "batch": 5, "train_images": 10,
       "steps": 5, "leapfrog_steps": 3}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rhvae(scale: dict, device: torch.device):
    torch.manual_seed(0)
    options = {"hidden": scale["hidden"]} if scale["hidden"] else {}
    return build_model(GeneratorConfig(input_shape=(1, *scale["size"]), model="rhvae", latent_dim=scale["latent_dim"],
                                       **options)).to(device)


def training_step(scale: dict, device: torch.device, mixed: bool, steps: int) -> dict:
    """ms per RHVAE training step (after one warm-up step) and peak memory; ``ran`` False with the
    error when the step fails."""
    model = rhvae(scale, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    x = torch.rand(scale["batch"], 1, *scale["size"], device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step():
        optimizer.zero_grad()
        with autocast(device, mixed):
            loss = model.loss(x).float()
        loss.backward()
        optimizer.step()
        return float(loss)

    try:
        step()
        synchronize(device)
        start = time.perf_counter()
        losses = [step() for _ in range(steps)]
        synchronize(device)
    except RuntimeError as error:  # torch.linalg.LinAlgError derives from it
        return {"ran": False, "error": " ".join(str(error).split())[:200]}
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return {"ran": bool(math.isfinite(losses[-1])), "ms_per_step": 1000 * (time.perf_counter() - start) / steps,
            "peak_gib": round(peak, 2)}


def chain_loop(scale: dict, device: torch.device, chains: int, compiled: bool, together: bool) -> dict:
    """The sampler's chain loop alone (what item 3 speeds up): adaptive HMC on √det G⁻¹ for two classes,
    each a metric with ``train_images`` codes in d dimensions (T 1.5 and 1.0), ``chains`` chains per
    class, the thesis's steps; one class after the other or both ``together`` in one batch; seconds of
    a first call (compilation included) and of a second one."""
    generator = torch.Generator().manual_seed(0)
    d, n = scale["latent_dim"], scale["train_images"]
    metrics = [Metric(torch.randn(n, d, generator=generator).to(device),
                      lower_factors(torch.randn(n, d, generator=generator),
                                    torch.randn(n, d * (d - 1) // 2, generator=generator)).to(device), t, 1e-2)
               for t in (1.5, 1.0)]
    starts = [metric.centroids[torch.arange(chains, device=device) % n] for metric in metrics]
    options = dict(steps=scale["steps"], leapfrog_steps=scale["leapfrog_steps"], step_size=0.03, warmup=100,
                   step_jitter=0.2, compile=compiled)
    generators = [torch.Generator(device=device) for _ in metrics]
    stacked = StackedMetrics(metrics)
    seconds = []
    for _ in range(2):
        synchronize(device)
        start = time.perf_counter()
        if together:
            hmc(stacked.log_volume_and_gradient, torch.stack(starts),
                generator=[g.manual_seed(k) for k, g in enumerate(generators)], **options)
        else:
            for k, (metric, first) in enumerate(zip(metrics, starts)):
                hmc(metric.log_volume_and_gradient, first, generator=generators[k].manual_seed(k), **options)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return {"first_s": seconds[0], "seconds": seconds[1]}


def sampling(scale: dict, device: torch.device, images: int) -> dict:
    """Seconds to draw ``images`` with the adaptive geometry-aware HMC sampler (thesis job)."""
    model = rhvae(scale, device).eval()
    train = torch.rand(scale["train_images"], 1, *scale["size"], device=device)
    sampler = build_sampler("rhvae-hmc", steps=scale["steps"], leapfrog_steps=scale["leapfrog_steps"]).fit(
        model, train, allow_uninformative=True)
    sampler.draw(min(images, 4), seed=1)  # warm-up: kernels, allocator
    synchronize(device)
    start = time.perf_counter()
    sampler.draw(images, seed=0)
    synchronize(device)
    return {"images": images, "seconds": time.perf_counter() - start}


_BARRIER: list = []  # a CNN worker's start barrier


def _cnn_worker(barrier) -> None:
    _BARRIER.append(barrier)


def _cnn_run(size, images: int, epochs: int, device: str, seed: int, threads: int) -> tuple[float, float]:
    """One CNN run on random images (a worker process): the wall-clock start and end of its
    training, which begins when every worker is ready (process start-up is not timed)."""
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(images, 1, *size, generator=generator)
    y = (torch.arange(images) % 2).long()
    settings = ClassifierTraining(epochs=epochs, batch_size=8, learning_rate=1e-4, device=device, seed=seed,
                                  images_on_device=device != "cpu", mixed_precision=device != "cpu",
                                  channels_last=device != "cpu")
    network = Conv5FC3((1, *size))
    _BARRIER[0].wait()
    start = time.time()
    train_classifier(network, (x, y), (x[:8], y[:8]), settings)
    return start, time.time()


def cnn_runs(size, images: int, epochs: int, device: torch.device, at_once: int, threads: int) -> dict:
    """Images per second (all runs together) of 1 run alone and of ``at_once`` runs in parallel
    processes, from the first start to the last end of their training."""
    context = multiprocessing.get_context("spawn")
    result = {}
    for runs in sorted({1, at_once}):
        with context.Pool(runs, initializer=_cnn_worker, initargs=(context.Barrier(runs),)) as pool:
            spans = pool.starmap(_cnn_run, [(size, images, epochs, str(device), seed, threads) for seed in range(runs)])
        wall = max(end for _, end in spans) - min(start for start, _ in spans)
        result[f"{runs}_at_once_images_per_s"] = runs * images * epochs / wall
    return result


def protocol(figures: dict, args, scale: dict) -> dict:
    """The thesis protocol's time from the measured rates (each assumption is a key)."""
    step = figures["training_bf16"] if figures["training_bf16"].get("ran") else figures["training_fp32"]
    steps_per_epoch = math.ceil(scale["train_images"] / scale["batch"])
    generators = 2 * args.generator_epochs * steps_per_epoch * step["ms_per_step"] / 1000
    per_image = figures["sampling"]["seconds"] / figures["sampling"]["images"]
    synthetic = 2 * args.synthetic_per_class * per_image
    rate = figures["cnn"][f"{args.at_once}_at_once_images_per_s"]
    real = 2 * scale["train_images"]
    passes = args.runs * args.protocol_cnn_epochs * (real + (real + 2 * args.synthetic_per_class))
    cnn = passes / rate
    return {"generator_epochs": args.generator_epochs, "synthetic_per_class": args.synthetic_per_class,
            "runs": args.runs, "cnn_epochs": args.protocol_cnn_epochs, "runs_at_once": args.at_once,
            "generators_s": generators, "synthetic_s": synthetic, "cnn_s": cnn,
            "total_s": generators + synthetic + cnn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--toy", action="store_true", help="tiny sizes and counts (the CPU test)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train-steps", type=int, default=10, help="timed RHVAE training steps")
    parser.add_argument("--draw", type=int, default=50, help="images per timed draw (thesis: 50)")
    parser.add_argument("--cnn-images", type=int, default=400)
    parser.add_argument("--cnn-epochs", type=int, default=2)
    parser.add_argument("--at-once", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per CNN process")
    parser.add_argument("--generator-epochs", type=int, default=300)
    parser.add_argument("--synthetic-per-class", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--protocol-cnn-epochs", type=int, default=100)
    args = parser.parse_args()
    device = resolve_device(args.device)
    scale = TOY if args.toy else THESIS
    cnn_size = scale["cnn_size"]
    started = time.perf_counter()
    figures = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "size": list(scale["size"]),
               "training_fp32": training_step(scale, device, False, args.train_steps),
               "training_bf16": training_step(scale, device, True, args.train_steps),
               "sampling": sampling(scale, device, args.draw),
               **{f"chains_{'together' if together else 'apart'}_{'compiled' if compiled else 'eager'}":
                  chain_loop(scale, device, args.draw, compiled, together)
                  for together in (False, True) for compiled in (False, True)},
               "cnn": cnn_runs(cnn_size, args.cnn_images, args.cnn_epochs, device, args.at_once, args.threads)}
    figures["protocol"] = protocol(figures, args, scale)
    figures["bench_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "device.json").write_text(json.dumps(figures, indent=2) + "\n")
    text = report(figures)
    (args.out / "device.txt").write_text(text)
    print(text)


def report(figures: dict) -> str:
    fp32, bf16, cnn, plan = figures["training_fp32"], figures["training_bf16"], figures["cnn"], figures["protocol"]
    step = lambda f: f"{f['ms_per_step']:.1f} ms, peak {f['peak_gib']} GiB" if f["ran"] else f"failed: {f['error']}"  # noqa: E731
    ratio = fp32["ms_per_step"] / bf16["ms_per_step"] if fp32.get("ran") and bf16.get("ran") else float("nan")
    chains = {key[len("chains_"):]: value for key, value in figures.items() if key.startswith("chains_")}
    apart = chains["apart_eager"]["seconds"]
    one, many = (cnn[key] for key in sorted(cnn, key=lambda k: int(k.split("_")[0])))
    lines = [f"{figures['device']}, torch {figures['torch']}, size {figures['size']}; script {figures['bench_s']:.0f} s",
             f"RHVAE training step: fp32 {step(fp32)}; bf16 autocast {step(bf16)}; fp32/bf16 ×{ratio:.2f}",
             f"geometry-aware sampling: {figures['sampling']['images']} images in {figures['sampling']['seconds']:.2f} s; "
             "its chain loop alone for two classes: " + ", ".join(
                 f"{name.replace('_', ' ')} {value['seconds']:.2f} s (×{apart / value['seconds']:.2f})"
                 for name, value in chains.items())
             + f"; compiling costs {chains['apart_compiled']['first_s'] - chains['apart_compiled']['seconds']:.1f} s "
               "apart (once per class: T differs), "
               f"{chains['together_compiled']['first_s'] - chains['together_compiled']['seconds']:.1f} s together",
             f"CNN runs: one at a time {one:.0f} images/s; {plan['runs_at_once']} at once {many:.0f} images/s "
             f"(×{many / one:.2f})",
             f"thesis protocol ({plan['generator_epochs']} generator epochs, {plan['synthetic_per_class']} synthetic per "
             f"class, {plan['runs']} runs × 2 conditions × {plan['cnn_epochs']} CNN epochs, {plan['runs_at_once']} "
             f"runs at once): generators {plan['generators_s'] / 60:.1f} min + synthesis {plan['synthetic_s'] / 60:.1f} "
             f"min + CNNs {plan['cnn_s'] / 60:.1f} min = {plan['total_s'] / 3600:.2f} h"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
