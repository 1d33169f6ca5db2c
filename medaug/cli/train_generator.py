"""``medaug train-generator``: one generator on one diagnosis."""

from __future__ import annotations

import argparse
from pathlib import Path

from medaug.cli.common import config_sections, seed, size_triple
from medaug.errors import ConfigError
from medaug.generative.config import MODELS


def _train_generator(args: argparse.Namespace) -> None:
    import torch
    import yaml

    from medaug.distributed import is_main_process
    from medaug.generative.config import GeneratorConfig
    from medaug.generative.models import build_model
    from medaug.generative.persistence import load_generator, weights_sha256
    from medaug.generative.trainer import TrainerConfig, train_generator
    from medaug.generative.training_data import (
        class_split, read_image_table, record_training_data)
    from medaug.preprocessing.images import image_tensor
    from medaug.io import write_text
    from medaug.output_folder import check_output, claim_output
    from medaug.run_folder import files_signature

    output = {"inputs": [args.source, args.labels, args.split, args.config, args.shared], "own": _trained_before_markers}
    check_output(args.out, "train-generator", **output)
    options = config_sections(args.config, ("generator", "trainer"))
    generator_options = dict(options.get("generator") or {})
    generator_options.setdefault("input_shape", (1, *args.size))
    if args.model is not None:
        if generator_options.get("model", args.model) != args.model:
            raise ConfigError(f"--model {args.model} contradicts generator.model: {generator_options['model']} in "
                              f"{args.config}; give one of them")
        generator_options["model"] = args.model
    config = GeneratorConfig.from_dict(generator_options)
    trainer = MODELS.get(config.model).trainer_for(config, TrainerConfig.from_dict({"seed": args.seed,
                                                                                    **(options.get("trainer") or {})}))
    table = read_image_table(args.source, args.labels)
    train_rows, validation_rows = class_split(table, args.label, args.split, seed=trainer.seed)
    spatial = config.input_shape[1:]
    train, validation = image_tensor(train_rows, spatial), image_tensor(validation_rows, spatial)
    # the images too (paths, sizes, mtimes): resuming on replaced or other images is refused
    settings = {"generator": config.to_dict(), "trainer": trainer.to_dict(),
                "images": files_signature([*train_rows["path"], *validation_rows["path"]])}
    shared_config = MODELS.get(config.model).shared_stage(config)
    if args.shared is not None:
        _check_shared(args.shared, config, shared_config)
    if is_main_process():
        claim_output(args.out, "train-generator", **output)
    if shared_config is not None:  # a latent diffusion's autoencoder: given, or trained first on these images
        shared = args.shared or _train_shared(args.out / "shared", shared_config, train, validation, trainer, settings)
        settings["shared"] = weights_sha256(shared)
    if is_main_process() and not (args.out / "checkpoint.pt").exists():  # a new training: record its settings
        write_text(args.out / "train_config.yaml", yaml.safe_dump(settings, sort_keys=False))
    torch.manual_seed(trainer.seed)
    model = build_model(config)
    if shared_config is not None:
        model.start_from(load_generator(shared))
    # checkpoint.pt records these settings (max_steps included): resuming with others raises ConfigError
    result = train_generator(model, train, validation, args.out, trainer, settings=settings)
    if not is_main_process():
        return
    record_training_data(args.out / "best", args.label, train_rows, validation_rows, spatial, source=str(args.source))
    print(f"{config.model} for {args.label}: {len(train)} training / {len(validation)} validation images, "
          f"best {'training' if trainer.selection == 'train' else 'validation'} loss "
          f"{result['best_' + ('train' if trainer.selection == 'train' else 'val') + '_loss']:.2f} at epoch "
          f"{result['best_epoch']} of {result['epochs']} ({result['steps']} steps); model in {args.out / 'best'}")


def _check_shared(shared: Path, config, shared_config) -> None:
    """``--shared`` must be the shared stage this model needs (same settings)."""
    from medaug.generative.persistence import load_generator

    if shared_config is None:
        raise ConfigError(f"--shared is the trained shared stage of a model that has one (ldm); a {config.model} has none")
    found, wanted = load_generator(shared).config.to_dict(), shared_config.to_dict()
    differing = [key for key in wanted if key != "options" and found.get(key) != wanted[key]]
    differing += [f"options.{key}" for key, value in wanted["options"].items() if found.get("options", {}).get(key) != value]
    if differing:
        raise ConfigError(f"--shared {shared} is not the stage this {config.model} model needs: its {', '.join(differing)} "
                          "differ; train it with these generator settings or leave --shared out")


def _train_shared(out: Path, shared_config, train, validation, trainer, settings) -> Path:
    """Train the model's shared stage on this label's images in ``out``; its ``best/`` folder."""
    import torch

    from medaug.generative.models import build_model
    from medaug.generative.trainer import train_generator

    torch.manual_seed(trainer.seed)
    trainer = MODELS.get(shared_config.model).trainer_for(shared_config, trainer)
    train_generator(build_model(shared_config), train, validation, out, trainer,
                    settings={**settings, "generator": shared_config.to_dict()})
    return out / "best"


def _trained_before_markers(folder: Path) -> bool:
    """A training folder written before markers: its settings, checkpoint or model."""
    return any((folder / name).exists() for name in ("train_config.yaml", "checkpoint.pt", "best"))


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("train-generator", help="train one generator (VAE, RHVAE, ...) on one diagnosis",
                                 description="Train a generative model on the training images of one diagnosis "
                                             "until its training loss stops improving (trainer.selection: train, as "
                                             "the thesis; the validation loss is logged as the overfitting curve; "
                                             "selection: validation stops on it instead); resumes an interrupted run.")
    parser.add_argument("source", type=Path, help="cohort TSV with a path column, or a CAPS folder (with --labels)")
    parser.add_argument("--label", required=True, help="diagnosis to model, for example AD")
    parser.add_argument("--model", default=None, choices=MODELS.names(),
                        help="generator model (default: generator.model of --config, else rhvae)")
    parser.add_argument("--out", type=Path, required=True, help="model folder (best/, training_log.csv)")
    parser.add_argument("--config", type=Path, default=None, metavar="YAML",
                        help="generator: and trainer: sections (GeneratorConfig / TrainerConfig fields)")
    parser.add_argument("--labels", type=Path, default=None, help="labels TSV when SOURCE is a CAPS folder")
    parser.add_argument("--split", type=Path, default=None, metavar="DIR",
                        help="split folder from `medaug split` (its train / validation subjects)")
    parser.add_argument("--size", type=size_triple, default=(84, 104, 89), metavar="X,Y,Z",
                        help="image size when the config has no input_shape (default 84,104,89)")
    parser.add_argument("--shared", type=Path, default=None, metavar="DIR",
                        help="a latent diffusion model (ldm): its autoencoder stage trained before, a best/ folder (for "
                             "example a study's generators/by-sampler/ldm/shared/best, trained on every class); "
                             "default: trained first in OUT/shared on this label's images")
    parser.add_argument("--seed", type=seed, default=0, help="in [0, 2^32)")
    parser.set_defaults(handler=_train_generator, log_folder="out")
