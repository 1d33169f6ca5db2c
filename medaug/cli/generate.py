"""``medaug generate``: synthetic images from a trained generator.

The sampler choices and one ``--OPTION`` flag per sampler option come from the sampler registry
(:mod:`medaug.sampling.samplers`); the options are validated by the sampler's options dataclass
before the model is loaded. Nothing is written into the model folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from medaug.cli.common import count, image_count, seed
from medaug.compute import INFERENCE_BATCH
from medaug.errors import ConfigError, InputDataError
from medaug.sampling.samplers import SAMPLERS

OPTION_PREFIX = "sampler_option_"


def sampler_options() -> dict[str, list[str]]:
    """Every sampler option name → the samplers that take it."""
    owners: dict[str, list[str]] = {}
    for name in SAMPLERS.names():
        for option in SAMPLERS.get(name).Options.option_names():
            owners.setdefault(option, []).append(name)
    return owners


def _value(text: str):
    """A flag value read as YAML (``3`` → 3, ``0.1`` → 0.1, ``auto`` → 'auto', ``null`` → None)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def _given_options(args: argparse.Namespace) -> dict:
    given = {key.removeprefix(OPTION_PREFIX): value for key, value in vars(args).items()
             if key.startswith(OPTION_PREFIX) and value is not None}
    refused = sorted(set(given) - set(SAMPLERS.get(args.sampler).Options.option_names()))
    if refused:
        raise ConfigError(f"the {args.sampler} sampler takes no {', '.join(refused)} option "
                          f"(its options: {', '.join(SAMPLERS.get(args.sampler).Options.option_names()) or 'none'})")
    return given


def _model_folder(folder: Path) -> Path:
    """``folder/best`` of a ``medaug train-generator`` output folder, else ``folder``; a training
    folder without ``best/`` (a training that has not finished) is refused with the fix."""
    from medaug.provenance import GeneratorProvenance

    if (folder / "best").is_dir():
        return folder / "best"
    if any((folder / name).exists() for name in ("train_config.yaml", "checkpoint.pt", "training_log.csv")):
        raise InputDataError(f"{folder} has no finished best/ model with its training-data record (its training "
                             f"did not finish); {GeneratorProvenance.resume_hint()}, then give {folder} or "
                             f"{folder / 'best'}")
    return folder


def _generate(args: argparse.Namespace) -> None:
    import torch

    from medaug.compute import resolve_device
    from medaug.generative.persistence import load_generator
    from medaug.preprocessing.images import image_tensor
    from medaug.provenance import GeneratorProvenance
    from medaug.sampling.pool import draw_pool, write_pool
    from medaug.sampling.samplers import Samples, build_sampler
    from medaug.sampling.sampler import posterior_means
    from medaug.output_folder import check_output, claim_output, derivative_named

    sampler = build_sampler(args.sampler, **_given_options(args))  # validated before any loading
    output = {"inputs": [args.model_dir], "own": derivative_named("medaug-synthetic")}  # folders before markers
    check_output(args.out, "generate", **output)
    model_dir = _model_folder(args.model_dir)
    model = load_generator(model_dir, map_location=resolve_device(args.device))
    provenance = GeneratorProvenance.read(model_dir)  # refuses an unfinished training, with the fix
    if sampler.models is not None and model.config.model not in sampler.models:
        own = [name for name in SAMPLERS.names() if model.config.model in (SAMPLERS.get(name).models or ())]
        raise ConfigError(f"--sampler {args.sampler} needs a {' or '.join(sampler.models)} generator; {model_dir} "
                          f"holds a {model.config.model}: use another --sampler (for example "
                          f"{' or '.join(own or ['gmm', 'prior'])})")
    shape = model.config.input_shape[1:]
    train = image_tensor(provenance.train_images, shape)
    device = next(model.parameters()).device
    sampler.fit(model, train.to(device), allow_uninformative=args.allow_uninformative)
    drawn = draw_pool(sampler, args.n, seed=args.seed, train=train, novelty_quantile=args.novelty_quantile)
    claim_output(args.out, "generate", **output)
    written = write_pool(sampler, drawn, args.out, model_dir=model_dir, train=train, seed=args.seed,
                         quantile=args.quantile, start_index=args.start_index, batch_size=args.batch_size)
    latents, diagnostics, quality = written.latents, written.diagnostics, written.quality
    if args.figure:
        from medaug.sampling.figure import plot_latent_geometry

        codes = posterior_means(model, train.to(device)).cpu()
        plot_latent_geometry(sampler, Samples(torch.cat(list(sampler.decode(latents[:8]))), latents.cpu()), codes,
                             args.figure)
        print(f"Figure: {args.figure}")
    chains = ", ".join(f"{key} {diagnostics[key]:.3g}" for key in ("acceptance_rate", "step_size", "sigma",
                                                                     "ess_per_draw", "split_r_hat")
                       if key in diagnostics)
    print(f"{len(written.table)} synthetic images written to {args.out}" + (f"; {chains}" if chains else ""))
    print(f"quality (first {quality['synthetic']} images, intensity space): diversity {quality['diversity']:.2f}, "
          f"coverage {quality['coverage']:.2f}, largest nearest-neighbour share {quality['max_nn_share']:.2f}, "
          f"precision {quality['precision']:.2f}, recall {quality['recall']:.2f}; novel / copies / averages "
          f"{quality['novel_fraction']:.2f} / {quality['copy_fraction']:.2f} / {quality['average_fraction']:.2f} "
          f"(real images, leave one out: copies {quality['real_copy_fraction']:.2f}, averages "
          f"{quality['real_average_fraction']:.2f}); per sample: {args.out}/synthetic_*.nearest.tsv")
    for warning in quality["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "generate", help="sample synthetic images from a trained generator",
        description="Draw latent codes with a sampler, decode them and write NIfTI images labelled as synthetic "
                    "(desc-synthetic + provenance sidecar).",
        epilog="samplers:\n  " + SAMPLERS.help().replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="folder from `medaug train-generator` (or its best/)")
    parser.add_argument("--sampler", default="rhvae-hmc", choices=SAMPLERS.names(),
                        help="posterior and jitter are copy controls (re-encoded / noisy training images)")
    parser.add_argument("-n", type=image_count, required=True, help="number of images (at most 100000 per call)")
    parser.add_argument("--out", type=Path, required=True, help="derivative folder for the synthetic images")
    parser.add_argument("--seed", type=seed, default=0, help="in [0, 2^32)")
    parser.add_argument("--batch-size", type=count, default=INFERENCE_BATCH, help="images decoded at a time")
    parser.add_argument("--start-index", type=count, default=1, help="first synthetic subject number")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (chains and decoding)")
    options = parser.add_argument_group("sampler options (each sampler's defaults apply when not given)")
    for option, owners in sorted(sampler_options().items()):
        flag = f"--{option.replace('_', '-')}"
        if flag in parser._option_string_actions:  # an option named like a command flag (two-stage's seed)
            flag = f"--sampler-{option.replace('_', '-')}"
        options.add_argument(flag, dest=OPTION_PREFIX + option, type=_value, metavar="VALUE",
                             help=f"({', '.join(owners)})")
    parser.add_argument("--quantile", type=_fraction, default=0.05, metavar="Q",
                        help="copy audit: τ is this quantile of the training images' leave-one-out nearest distances")
    parser.add_argument("--novelty-quantile", type=_fraction, default=None, metavar="Q",
                        help="drop samples nearer to a training image than this quantile of those distances "
                             "(and draw more), counted in the quality record")
    parser.add_argument("--allow-uninformative", action="store_true",
                        help="sample even from a collapsed generator (a warning instead of the refusal)")
    parser.add_argument("--figure", type=Path, default=None, metavar="PNG",
                        help="2D latent spaces: density, training codes, samples and decoded images")
    parser.set_defaults(handler=_generate, log_folder="out")
