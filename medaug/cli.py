"""The ``medaug`` command: one entry point with sub-commands, thin over the Python API.

Bad arguments print a usage message and exit with code 2; domain errors print one line naming
the problem and exit with the error's code; nothing prints a traceback unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from medaug import __version__
from medaug.errors import ConfigError, InputDataError, MedaugError

logger = logging.getLogger("medaug")


def _csv(value: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, for example CN,AD")
    return items


def _example_cohort(args: argparse.Namespace) -> None:
    from medaug.data.cohort_figure import plot_example_subjects
    from medaug.data.example_cohort import ExampleCohortConfig, build_example_cohort, summarize_cohort

    config = ExampleCohortConfig(
        subjects_per_label=args.subjects_per_label, labels=args.labels, resolution_mm=args.resolution,
        sessions=args.sessions, missing_rate=args.missing_rate, effect=args.effect, seed=args.seed)
    truth = build_example_cohort(args.out_dir, config, jobs=args.jobs)
    print(f"Simulated BIDS cohort written to {args.out_dir}")
    print(summarize_cohort(truth))
    if args.figure:
        plot_example_subjects(args.out_dir, args.figure)
        print(f"Figure: {args.figure}")


def _add_example_cohort(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "example-cohort", help="simulate a BIDS cohort (CN/AD) from the MNI152 anatomy shipped with nilearn",
        description="Simulate a longitudinal BIDS T1w cohort with known AD effects (ventricular "
                    "enlargement, medial-temporal atrophy), scanner poses, bias fields and noise.")
    parser.add_argument("out_dir", type=Path, help="output BIDS folder (new, or an earlier run to resume)")
    parser.add_argument("--subjects-per-label", type=int, default=8, metavar="N")
    parser.add_argument("--labels", type=_csv, default=("CN", "AD"), help="diagnoses, among CN, MCI, AD")
    parser.add_argument("--resolution", type=float, default=1.0, metavar="MM", help="voxel size in mm")
    parser.add_argument("--sessions", type=_csv, default=("M000",), help="for example M000,M012,M024")
    parser.add_argument("--missing-rate", type=float, default=0.0, metavar="P",
                        help="probability that a follow-up session is missing (never the baseline)")
    parser.add_argument("--effect", type=float, default=1.0, metavar="SIZE",
                        help="scale of the AD effect (0: none, 1: default, >1: easier to classify)")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument("--jobs", type=int, default=1, metavar="J", help="subjects simulated in parallel")
    parser.add_argument("--figure", type=Path, default=None, metavar="PNG",
                        help="also save a PNG of CN and AD subjects, baseline and last visit")
    parser.set_defaults(handler=_example_cohort)


def _cohort(args: argparse.Namespace) -> None:
    from medaug.data.clinica import write_labels
    from medaug.data.cohort import load_cohort, summarize_table
    from medaug.data.selection import baseline_sessions, stable_diagnosis
    from medaug.io import write_tsv

    for output in filter(None, (args.output, args.labels)):
        if output.resolve().is_relative_to(args.bids_dir.resolve()):
            raise ConfigError(f"{output} is inside the input dataset {args.bids_dir}; write it elsewhere")
    cohort = load_cohort(args.bids_dir, acquisition=args.acq, database_dir=args.index_cache)
    if args.stable_diagnosis:
        cohort = stable_diagnosis(cohort)
    if args.baseline:
        cohort = baseline_sessions(cohort)
    write_tsv(args.output, cohort)
    if args.labels:
        write_labels(cohort, args.labels)
    print(summarize_table(cohort).to_string(index=False))
    print(f"{len(cohort)} images written to {args.output}" + (f" and {args.labels}" if args.labels else ""))


def _add_cohort(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("cohort", help="index a BIDS dataset into a cohort table (one row per T1w image)")
    parser.add_argument("bids_dir", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True, help="cohort TSV to write")
    parser.add_argument("--acq", default=None, help="keep only T1w images with this acq- label")
    parser.add_argument("--index-cache", type=Path, default=None, metavar="DIR",
                        help="persistent pybids index folder (index a large dataset once)")
    parser.add_argument("--baseline", action="store_true", help="keep only the baseline session of each subject")
    parser.add_argument("--stable-diagnosis", action="store_true",
                        help="keep only subjects whose diagnosis never changes over the follow-up")
    parser.add_argument("--labels", type=Path, default=None, metavar="TSV",
                        help="also write a ClinicaDL labels TSV (participant_id, session_id, diagnosis, age, sex)")
    parser.set_defaults(handler=_cohort)


def _split(args: argparse.Namespace) -> None:
    import pandas as pd

    from medaug.data.splits import SplitConfig, balance_report, save_split, split_subjects

    if not args.cohort.is_file():
        raise InputDataError(f"cohort table {args.cohort} not found; create it with `medaug cohort`")
    cohort = pd.read_csv(args.cohort, sep="\t", na_values=["n/a"], keep_default_na=False)
    config = SplitConfig(test_per_label=args.test_per_label, train_n=args.train_n, seed=args.seed,
                         p_threshold=args.p_threshold, max_tries=args.max_tries)
    subjects = split_subjects(cohort, config)
    save_split(subjects, config, args.output)
    print(balance_report(subjects).to_string(index=False))
    print(f"split written to {args.output}")


def _add_split(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("split", help="subject-level, stratified, demographically balanced splits")
    parser.add_argument("cohort", type=Path, help="cohort TSV from `medaug cohort`")
    parser.add_argument("-o", "--output", type=Path, required=True, help="split folder to write")
    parser.add_argument("--test-per-label", type=int, required=True, metavar="N")
    parser.add_argument("--train-n", type=int, default=None, metavar="N", help="train-N subset, N per label")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--p-threshold", type=float, default=0.8, help="minimum p of the age and sex tests")
    parser.add_argument("--max-tries", type=int, default=1000)
    parser.set_defaults(handler=_split)


def _size(value: str) -> tuple[int, int, int]:
    try:
        size = tuple(int(v) for v in value.split(","))
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise argparse.ArgumentTypeError("expected three positive integers, for example 84,104,89")
    return size


def _preprocess(args: argparse.Namespace) -> None:
    from medaug.data.cohort import load_cohort
    from medaug.preprocessing.pipeline import T1LinearConfig
    from medaug.preprocessing.runner import QC_FILE, preprocess_cohort

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be ≥ 1, got {args.jobs}")
    config = T1LinearConfig(template=str(args.template) if args.template else None,
                            template_space=args.template_space, n4=not args.no_n4, min_ncc=args.min_ncc,
                            size=args.size)
    cohort = load_cohort(args.bids_dir, acquisition=args.acq, database_dir=args.index_cache)
    if args.participant:
        cohort = cohort[cohort["participant_id"].isin(args.participant)]
    qc = preprocess_cohort(cohort, args.out_dir, config, sources=[args.bids_dir], jobs=args.jobs)
    print(qc["status"].value_counts().rename_axis("status").reset_index().to_string(index=False))
    print(f"CAPS tree in {args.out_dir}; QC table {args.out_dir / QC_FILE}")


def _add_preprocess(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "preprocess", help="Clinica t1-linear equivalent (N4, affine to MNI, crop) into a CAPS-like tree",
        description="N4 bias correction, rigid + affine registration to the MNI152 template and resampling "
                    "onto Clinica's 169×208×179 crop grid, in pure Python (SimpleITK). Re-running skips "
                    "finished images; failures are recorded in the QC table.")
    parser.add_argument("bids_dir", type=Path)
    parser.add_argument("out_dir", type=Path, help="CAPS-like output folder (outside the BIDS dataset)")
    parser.add_argument("--size", type=_size, default=None, metavar="X,Y,Z",
                        help="also write a resized, min-max rescaled copy, for example 84,104,89")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="images processed in parallel")
    parser.add_argument("--template", type=Path, default=None, metavar="NIFTI",
                        help="template T1w (default: nilearn's MNI152 2009a, no download)")
    parser.add_argument("--template-space", default=None, metavar="LABEL",
                        help="space- label of --template when its name has no tpl- entity")
    parser.add_argument("--no-n4", action="store_true", help="skip N4 bias-field correction")
    parser.add_argument("--min-ncc", type=float, default=0.5, help="QC threshold on NCC with the template")
    parser.add_argument("--participant", nargs="+", default=None, metavar="SUB", help="only these participants")
    parser.add_argument("--acq", default=None, help="keep only T1w images with this acq- label")
    parser.add_argument("--index-cache", type=Path, default=None, metavar="DIR")
    parser.set_defaults(handler=_preprocess)


def _config_sections(path: Path | None, sections: tuple[str, ...]) -> dict:
    """The sections of a YAML settings file (safe_load); unknown sections are refused by name."""
    if path is None:
        return {}
    import yaml

    if not path.is_file():
        raise ConfigError(f"{path} not found; give a YAML file with {', '.join(s + ':' for s in sections)} sections")
    options = yaml.safe_load(path.read_text()) or {}
    unknown = set(options) - set(sections)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)}; use {', '.join(s + ':' for s in sections)}")
    return options


def _train_generator(args: argparse.Namespace) -> None:
    import torch
    import yaml

    from medaug.distributed import is_main_process
    from medaug.generative.config import GeneratorConfig
    from medaug.generative.models import build_model
    from medaug.generative.trainer import TrainerConfig, train_generator
    from medaug.generative.training_data import (
        class_split, image_tensor, read_image_table, record_training_data)
    from medaug.io import write_text

    options = _config_sections(args.config, ("generator", "trainer"))
    generator_options = dict(options.get("generator") or {})
    generator_options.setdefault("input_shape", (1, *args.size))
    generator_options["model"] = args.model
    config = GeneratorConfig.from_dict(generator_options)
    trainer = TrainerConfig(**{"seed": args.seed, **(options.get("trainer") or {})})
    table = read_image_table(args.source, args.labels)
    train_rows, validation_rows = class_split(table, args.label, args.split, seed=trainer.seed)
    spatial = config.input_shape[1:]
    train, validation = image_tensor(train_rows, spatial), image_tensor(validation_rows, spatial)
    resolved = yaml.safe_dump({"generator": config.to_dict(), "trainer": trainer.to_dict()}, sort_keys=False)
    recorded = args.out / "train_config.yaml"
    if recorded.exists() and recorded.read_text() != resolved:
        raise ConfigError(f"{args.out} holds a training with other settings ({recorded}); use a new folder")
    if is_main_process():  # under torchrun, process 0 writes
        write_text(recorded, resolved)
    torch.manual_seed(trainer.seed)
    result = train_generator(build_model(config), train, validation, args.out, trainer)
    if not is_main_process():
        return
    record_training_data(args.out / "best", args.label, train_rows, validation_rows, spatial, source=str(args.source))
    print(f"{args.model} for {args.label}: {len(train)} training / {len(validation)} validation images, "
          f"best validation loss {result['best_val_loss']:.2f} at epoch {result['best_epoch']} "
          f"of {result['epochs']}; model in {args.out / 'best'}")


def _add_train_generator(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("train-generator", help="train one generator (VAE, RHVAE, ...) on one diagnosis",
                                 description="Train a generative model on the images of one diagnosis, with early "
                                             "stopping on a subject-level validation set; resumes an interrupted run.")
    parser.add_argument("source", type=Path, help="cohort TSV with a path column, or a CAPS folder (with --labels)")
    parser.add_argument("--label", required=True, help="diagnosis to model, for example AD")
    parser.add_argument("--model", default="rhvae", choices=("vae", "rhvae", "vamp", "rae_l2", "rae_gp"))
    parser.add_argument("--out", type=Path, required=True, help="model folder (best/, training_log.csv)")
    parser.add_argument("--config", type=Path, default=None, metavar="YAML",
                        help="generator: and trainer: sections (GeneratorConfig / TrainerConfig fields)")
    parser.add_argument("--labels", type=Path, default=None, help="labels TSV when SOURCE is a CAPS folder")
    parser.add_argument("--split", type=Path, default=None, metavar="DIR",
                        help="split folder from `medaug split` (its train / validation subjects)")
    parser.add_argument("--size", type=_size, default=(84, 104, 89), metavar="X,Y,Z",
                        help="image size when the config has no input_shape (default 84,104,89)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=_train_generator)


def _generate(args: argparse.Namespace) -> None:
    import json

    import pandas as pd
    import torch

    from medaug.generative.persistence import load_generator
    from medaug.generative.training_data import image_tensor
    from medaug.io import write_json
    from medaug.compute import resolve_device
    from medaug.sampling.quality import QUALITY_IMAGES, quality_warnings, reconstruct, sample_quality
    from medaug.sampling.samplers import Samples, build_sampler
    from medaug.sampling.synthetic import synthetic_listing, write_synthetic

    model_dir = args.model_dir / "best" if (args.model_dir / "best").is_dir() else args.model_dir
    model = load_generator(model_dir, map_location=resolve_device(args.device))
    provenance = json.loads((model_dir / "provenance.json").read_text())
    if "train_images" not in provenance:
        raise InputDataError(f"{model_dir / 'provenance.json'} records no training images: the generator's training "
                             "did not finish (rerun `medaug train-generator` with the same arguments to resume it)")
    given = {"steps": args.steps, "leapfrog_steps": args.leapfrog_steps, "step_size": args.step_size,
             "warmup": args.warmup, "target_acceptance": args.target_acceptance, "temperature": args.temperature,
             "sigma": args.sigma, "n_components": args.components, "noise_std": args.noise_std}
    accepted = {"rhvae-hmc": ("steps", "leapfrog_steps", "step_size", "warmup", "target_acceptance", "temperature"),
                "random-walk": ("steps", "sigma", "warmup", "target_acceptance", "temperature"),
                "geometric": ("steps", "leapfrog_steps", "step_size", "warmup", "target_acceptance"),
                "gmm": ("n_components",), "jitter": ("noise_std",)}.get(args.sampler, ())
    ignored = sorted(k for k, v in given.items() if v is not None and k not in accepted)
    if ignored:
        raise ConfigError(f"the {args.sampler} sampler takes no {', '.join(ignored)} option")
    sampler = build_sampler(args.sampler, **{k: v for k, v in given.items() if v is not None and k in accepted})
    shape = model.config.input_shape[1:]
    rows = lambda paths: pd.DataFrame({"participant_id": "x", "session_id": "n/a", "path": paths})  # noqa: E731
    train = image_tensor(rows(provenance["train_images"]), shape)
    held_out = provenance.get("validation_images")
    validation = image_tensor(rows(held_out), shape) if held_out else None
    device = next(model.parameters()).device
    sampler.fit(model, train.to(device), allow_uninformative=args.allow_uninformative)
    write_json(model_dir / f"sampler_{args.sampler}.json", sampler.config())
    latents, diagnostics = sampler.draw(args.n, seed=args.seed)
    label = provenance.get("label", "unknown")
    table = write_synthetic(latents.cpu(), sampler.decode(latents, args.batch_size), args.out,
                            label=label, model_dir=model_dir, sampler=sampler,
                            seed=args.seed, start_index=args.start_index, diagnostics=diagnostics)
    shown = latents[:QUALITY_IMAGES]
    quality = sample_quality(torch.cat(list(sampler.decode(shown, args.batch_size))), train, held_out=validation,
                             reconstructions=reconstruct(model, train),
                             held_out_reconstructions=reconstruct(model, validation) if validation is not None else None)
    warnings = quality_warnings(quality) + diagnostics.get("warnings", [])
    write_json(synthetic_listing(args.out, label, args.seed).with_suffix(".quality.json"),
               {**quality, "chains": diagnostics, "posterior": sampler.posterior, "warnings": warnings})
    if args.figure:
        from medaug.sampling.figure import plot_latent_geometry

        with torch.no_grad():
            codes = torch.cat([model.encoder(part)[0] for part in train.to(device).split(64)]).cpu()
        plot_latent_geometry(sampler, Samples(torch.cat(list(sampler.decode(latents[:8]))), latents.cpu()), codes,
                             args.figure)
        print(f"Figure: {args.figure}")
    chains = ", ".join(f"{key} {diagnostics[key]:.3g}" for key in ("acceptance_rate", "step_size", "sigma",
                                                                     "ess_per_draw", "split_r_hat")
                       if key in diagnostics)
    print(f"{len(table)} synthetic images written to {args.out}" + (f"; {chains}" if chains else ""))
    print(f"quality (first {len(shown)} images, intensity space): diversity {quality['diversity']:.2f}, coverage "
          f"{quality['coverage']:.2f}, largest nearest-neighbour share {quality['max_nn_share']:.2f}, precision "
          f"{quality['precision']:.2f}, recall {quality['recall']:.2f}")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _temperature(value: str) -> str | float:
    return value if value in ("auto", "model") else float(value)


def _add_generate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("generate", help="sample synthetic images from a trained generator",
                                 description="Draw latent codes with a sampler, decode them and write NIfTI images "
                                             "labelled as synthetic (desc-synthetic + provenance sidecar).")
    parser.add_argument("model_dir", type=Path, help="folder from `medaug train-generator` (or its best/)")
    parser.add_argument("--sampler", default="rhvae-hmc", choices=("rhvae-hmc", "random-walk", "geometric", "gmm",
                                                                   "prior", "two-stage", "vamp", "posterior", "jitter"),
                        help="posterior and jitter are copy controls (re-encoded / noisy training images)")
    parser.add_argument("-n", type=int, required=True, help="number of images")
    parser.add_argument("--out", type=Path, required=True, help="derivative folder for the synthetic images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--start-index", type=int, default=1, help="first synthetic subject number")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (chains and decoding)")
    parser.add_argument("--steps", type=int, help="chain transitions after warm-up (rhvae-hmc, random-walk, geometric)")
    parser.add_argument("--warmup", type=int, help="step-size adaptation transitions, discarded (0: fixed step)")
    parser.add_argument("--target-acceptance", type=float, help="acceptance rate the warm-up adapts toward")
    parser.add_argument("--temperature", type=_temperature, help="sampling temperature: auto (code spacing), "
                                                                 "model (the trained T) or a number")
    parser.add_argument("--sigma", type=float, help="initial tangent proposal std (random-walk)")
    parser.add_argument("--leapfrog-steps", type=int)
    parser.add_argument("--step-size", type=float, help="initial (or, with --warmup 0, fixed) leapfrog step")
    parser.add_argument("--components", type=int, help="mixture components (gmm)")
    parser.add_argument("--noise-std", type=float, help="voxel noise std (jitter)")
    parser.add_argument("--allow-uninformative", action="store_true",
                        help="sample even from a collapsed generator (a warning instead of the refusal)")
    parser.add_argument("--figure", type=Path, default=None, metavar="PNG",
                        help="2D latent spaces: density, training codes, samples and decoded images")
    parser.set_defaults(handler=_generate)


def _run(args: argparse.Namespace) -> None:
    import dataclasses

    from medaug.study.config import load_study_config
    from medaug.study.pipeline import run_study

    config = load_study_config(args.config)
    if args.runs is not None:
        config = dataclasses.replace(config, runs=args.runs)  # validated like the file
    result = run_study(config)
    test = result["summary"][result["summary"]["test_set"] == "test"]
    for row in test.itertuples():
        print(f"{row.classifier:>14} {row.condition:<34} balanced accuracy "
              f"{100 * row.balanced_accuracy_mean:5.1f} ± {100 * (row.balanced_accuracy_std or 0):4.1f} "
              f"({row.runs} runs)")
    print(f"report: {Path(config.output) / 'summary.md'}")


def _add_run(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("run", help="run an augmentation study from a YAML config (pipelines/*.yaml)",
                                 description="Cohort, split, preprocessing, per-class generators, synthetic images, "
                                             "classifiers over repeated runs and the report; re-running resumes.")
    parser.add_argument("config", type=Path, help="study YAML, for example pipelines/demo.yaml")
    parser.add_argument("--runs", type=int, default=None, help="override the number of runs (may grow on resume)")
    parser.set_defaults(handler=_run)


def _longitudinal_fit(args: argparse.Namespace) -> None:

    from medaug.generative.config import GeneratorConfig
    from medaug.generative.training_data import read_image_table
    from medaug.longitudinal.flow_vae import FlowTraining, FlowVAEConfig
    from medaug.longitudinal.workflow import fit_longitudinal

    options = _config_sections(args.config, ("generator", "flow", "training"))
    generator = {"input_shape": (1, *args.size), "latent_dim": 16, **(options.get("generator") or {}),
                 "model": args.prior}
    config = FlowVAEConfig.from_dict({**(options.get("flow") or {}), "generator": GeneratorConfig.from_dict(generator),
                                      "visits": args.visits, "posterior": args.posterior})
    training = FlowTraining.from_dict({"seed": args.seed, **(options.get("training") or {}),
                                       **({"epochs": args.epochs} if args.epochs else {})})
    table = read_image_table(args.source, args.labels)
    result = fit_longitudinal(table, args.label, args.out, config, training, interval_years=args.interval,
                              split_dir=args.split)
    print(f"longitudinal VAE for {args.label}: {result['train_subjects']} training subjects "
          f"({result['observed_visits']} observed visits), {result['validation_subjects']} validation; best "
          f"validation loss {result['best_val_loss']:.2f} at epoch {result['best_epoch']}; model in {args.out / 'model'}")


def _longitudinal_generate(args: argparse.Namespace) -> None:
    from medaug.longitudinal.workflow import generate_longitudinal

    table = generate_longitudinal(args.model_dir, args.n, args.out, seed=args.seed, start_index=args.start_index,
                                  start=args.start, components=args.components)
    print(f"{table['participant_id'].nunique()} synthetic subjects ({len(table)} sessions) written to {args.out}")


def _longitudinal_impute(args: argparse.Namespace) -> None:
    from medaug.generative.training_data import read_image_table
    from medaug.longitudinal.workflow import impute_longitudinal

    table = read_image_table(args.source, args.labels)
    written = impute_longitudinal(args.model_dir, table, args.out, draws=args.draws, seed=args.seed,
                                  sources=[args.source])
    counts = written["kind"].value_counts().to_dict()
    print(f"{counts.get('imputed', 0)} imputed and {counts.get('extrapolated', 0)} extrapolated visits of "
          f"{written['participant_id'].nunique()} subjects written to {args.out}")


def _add_longitudinal(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("longitudinal", help="longitudinal VAE with flows: fit, generate, impute",
                                 description="Flow-based longitudinal VAE (thesis ch. 6) on sessions placed on a "
                                             "regular visit grid by age.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    fit = actions.add_parser("fit", help="train on the sequences of one diagnosis (resumes)")
    fit.add_argument("source", type=Path, help="cohort TSV with path and age columns, or a CAPS folder (with --labels)")
    fit.add_argument("--label", required=True, help="diagnosis to model, for example AD")
    fit.add_argument("--out", type=Path, required=True, help="model folder (model/, training_log.tsv, checkpoint.pt)")
    fit.add_argument("--labels", type=Path, default=None, help="labels TSV with ages when SOURCE is a CAPS folder")
    fit.add_argument("--split", type=Path, default=None, metavar="DIR", help="split folder from `medaug split`")
    fit.add_argument("--visits", type=int, default=4, help="visits on the grid (default 4)")
    fit.add_argument("--interval", type=float, default=1.0, help="years between grid visits (default 1)")
    fit.add_argument("--size", type=_size, default=(84, 104, 89), metavar="X,Y,Z")
    fit.add_argument("--prior", default="vae", choices=("vae", "vamp"), help="N(0, I) or VAMP prior on z_0")
    fit.add_argument("--posterior", default="gaussian", choices=("gaussian", "iaf"))
    fit.add_argument("--epochs", type=int, default=None)
    fit.add_argument("--config", type=Path, default=None, metavar="YAML",
                     help="generator:, flow: and training: sections (GeneratorConfig / FlowVAEConfig / FlowTraining)")
    fit.add_argument("--seed", type=int, default=0)
    fit.set_defaults(handler=_longitudinal_fit)
    generate = actions.add_parser("generate", help="new synthetic subjects as BIDS sessions")
    generate.add_argument("model_dir", type=Path)
    generate.add_argument("-n", type=int, required=True, help="number of subjects")
    generate.add_argument("--out", type=Path, required=True)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--start-index", type=int, default=1)
    generate.add_argument("--start", default="prior", choices=("prior", "gmm"),
                          help="z_0 from the prior, or from a Gaussian mixture of the training first-visit codes")
    generate.add_argument("--components", type=int, default=4, help="mixture components with --start gmm")
    generate.set_defaults(handler=_longitudinal_generate)
    impute = actions.add_parser("impute", help="impute missing and extrapolate later visits (Alg. 7)")
    impute.add_argument("model_dir", type=Path)
    impute.add_argument("source", type=Path, help="cohort TSV with path and age columns, or a CAPS folder")
    impute.add_argument("--labels", type=Path, default=None)
    impute.add_argument("--out", type=Path, required=True)
    impute.add_argument("--draws", type=int, default=10, help="posterior draws per observed anchor")
    impute.add_argument("--seed", type=int, default=0)
    impute.set_defaults(handler=_longitudinal_impute)


SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_example_cohort, _add_cohort, _add_split, _add_preprocess, _add_train_generator,
    _add_generate, _add_run, _add_longitudinal)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medaug", description="Geometry-aware generative data augmentation for 3D brain MRI.")
    parser.add_argument("--version", action="version", version=f"medaug {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    subparser = parser._subparsers._group_actions[0].choices[args.command]
    try:
        args.handler(args)
    except ConfigError as error:
        if args.verbose:
            raise
        subparser.error(str(error))  # usage + message, exit code 2
    except MedaugError as error:
        if args.verbose:
            raise
        print(f"medaug {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    return 0
