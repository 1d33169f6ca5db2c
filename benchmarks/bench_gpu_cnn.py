"""CNN training throughput on one GPU at thesis size (84×104×89, Conv5_FC3, batch 8), side by side
in one run: the streamed path of issue #10's first measurement against images held in GPU memory,
cuDNN autotuning, bf16 and the channels-last layout, then K runs trained at once on the same GPU
(what ``executor: ray`` with ``gpus_per_task: 1/K`` does). CNN training dominated the whole study
(``results_gpu_study.txt``), so this is the stage that decides the one-hour target.

Each variant: a one-epoch warm-up (cuDNN autotuning happens there), then ``--epochs`` timed epochs
of ``train_classifier`` on ``--images`` images (a float16 stack on disk, as synthetic pools are).

Run: python benchmarks/bench_gpu_cnn.py --images 1100 --epochs 3 --workers 12 --out /tmp/bench_cnn
"""

import argparse
import json
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from medaug.data.volumes import VolumeFile, Volumes, write_volume_file
from medaug.nets.classifiers import Conv5FC3
from medaug.study.network_training import ClassifierTraining, train_classifier
from scale_tools import volumes

SIZE = (84, 104, 89)
VARIANTS = {  # name: ClassifierTraining overrides
    "streamed fp32 (first measurement)": dict(cudnn_autotune=False),
    "streamed fp32 + autotune": dict(),
    "on GPU fp32 + autotune": dict(images_on_device=True),
    "on GPU bf16 + autotune": dict(images_on_device=True, mixed_precision=True),
    "on GPU bf16 + autotune + channels-last": dict(images_on_device=True, mixed_precision=True, channels_last=True),
    "on GPU fp32 + autotune + channels-last": dict(images_on_device=True, channels_last=True),
}


def data(folder: Path, n: int) -> tuple[tuple, tuple]:
    """``n`` training images half per class (float16 stack) and 24 validation images (float32)."""
    if not (folder / "train.npy").exists():
        write_volume_file(folder / "train.npy", (b for c in (0, 1) for b in volumes(n // 2, c, SIZE, seed=c)),
                          (n // 2 * 2, 1, *SIZE), dtype="float16")
        write_volume_file(folder / "val.npy", (b for c in (0, 1) for b in volumes(12, c, SIZE, seed=10 + c)),
                          (24, 1, *SIZE))
    labels = torch.arange(n // 2 * 2) >= n // 2
    return ((Volumes.of(VolumeFile(folder / "train.npy")), labels.long()),
            (Volumes.of(VolumeFile(folder / "val.npy")), (torch.arange(24) >= 12).long()))


def images_per_second(folder: Path, n: int, epochs: int, overrides: dict, workers: int, seed: int = 0) -> float:
    train, validation = data(folder, n)
    settings = dict(batch_size=8, device="cuda", loader_workers=workers, seed=seed) | overrides
    train_classifier(Conv5FC3((1, *SIZE)), train, validation, ClassifierTraining(epochs=1, **settings))
    torch.cuda.synchronize()
    start = time.perf_counter()
    train_classifier(Conv5FC3((1, *SIZE)), train, validation, ClassifierTraining(epochs=epochs, **settings))
    torch.cuda.synchronize()
    return len(train[0]) * epochs / (time.perf_counter() - start)


def _concurrent_run(rank: int, folder: Path, n: int, epochs: int, overrides: dict, workers: int, queue) -> None:
    queue.put((rank, images_per_second(folder, n, epochs, overrides, workers, seed=rank), time.time()))


def concurrent(folder: Path, n: int, epochs: int, overrides: dict, workers: int, runs: int) -> float:
    """``runs`` seeded CNN runs at once, one process each; images per second summed over runs
    (each run's own rate, all measured while the others train)."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_concurrent_run, args=(r, folder, n, epochs, overrides, workers, queue))
                 for r in range(runs)]
    for process in processes:
        process.start()
    rates = [queue.get()[1] for _ in processes]
    for process in processes:
        process.join()
    return sum(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1100, help="training images (real + synthetic)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=12, help="DataLoader workers of the streamed variants")
    parser.add_argument("--concurrent", type=int, nargs="*", default=[2, 4], help="runs trained at once")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_gpu_cnn"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}; {args.images} images "
          f"1x{'x'.join(map(str, SIZE))}, batch 8, {args.epochs} timed epochs after a 1-epoch warm-up", flush=True)
    figures = {}
    for name, overrides in VARIANTS.items():
        figures[name] = images_per_second(args.out, args.images, args.epochs, overrides, args.workers)
        print(f"{name:45s} {figures[name]:7.0f} images/s  "
              f"({figures[name] / figures[next(iter(VARIANTS))]:.2f}x the first)", flush=True)
    best = max(figures, key=figures.get)
    for runs in args.concurrent:
        name = f"{runs} runs at once, each '{best}'"
        figures[name] = concurrent(args.out, args.images, args.epochs, VARIANTS[best], args.workers, runs)
        print(f"{name:45s} {figures[name]:7.0f} images/s in all  "
              f"({figures[name] / figures[next(iter(VARIANTS))]:.2f}x the first)", flush=True)
    (args.out / "figures.json").write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
