"""``medaug longitudinal fit|generate|impute``: the flow-based longitudinal VAE (thesis ch. 6) and
the feature-mapping trajectory model (ch. 5; fit and generate)."""

from __future__ import annotations

import argparse
from pathlib import Path

from medaug.cli.common import bounded, config_sections, count, image_count, seed, size_triple
from medaug.errors import ConfigError


def _longitudinal_fit(args: argparse.Namespace) -> None:
    from medaug.longitudinal.workflow import fitted_before_markers
    from medaug.output_folder import check_output

    check_output(args.out, "longitudinal fit", inputs=[args.source, args.labels, args.split, args.config,
                                                       args.generator], own=fitted_before_markers)
    if (args.model == "feature-mapping") != (args.generator is not None):
        raise ConfigError("--generator (a trained generator whose encoder gives each visit's features) goes with "
                          "--model feature-mapping, and only with it")
    (_fit_trajectory if args.model == "feature-mapping" else _fit_flow)(args)


def _fit_flow(args: argparse.Namespace) -> None:
    from medaug.generative.config import GeneratorConfig
    from medaug.generative.training_data import read_image_table
    from medaug.longitudinal.flow_vae import FlowTraining, FlowVAEConfig
    from medaug.longitudinal.workflow import fit_longitudinal

    options = config_sections(args.config, ("generator", "flow", "training"))
    generator = {"input_shape": (1, *args.size), "latent_dim": 16, **(options.get("generator") or {}),
                 "model": args.prior}
    config = FlowVAEConfig.from_dict({**(options.get("flow") or {}), "generator": GeneratorConfig.from_dict(generator),
                                      "visits": args.visits, "posterior": args.posterior})
    training = FlowTraining.from_dict({"seed": args.seed, **(options.get("training") or {}),
                                       **({"epochs": args.epochs} if args.epochs is not None else {})})
    table = read_image_table(args.source, args.labels)
    result = fit_longitudinal(table, args.label, args.out, config, training, interval_years=args.interval,
                              split_dir=args.split)
    print(f"longitudinal VAE for {args.label}: {result['train_subjects']} training subjects "
          f"({result['observed_visits']} observed visits), {result['validation_subjects']} validation; best "
          f"validation loss {result['best_val_loss']:.2f} at epoch {result['best_epoch']}; model in {args.out / 'model'}")


def _fit_trajectory(args: argparse.Namespace) -> None:
    from medaug.generative.training_data import read_image_table
    from medaug.longitudinal.trajectory import TrajectoryTraining
    from medaug.longitudinal.trajectory_workflow import fit_trajectory

    options = config_sections(args.config, ("trajectory", "training"))
    training = TrajectoryTraining.from_dict({"seed": args.seed, **(options.get("training") or {}),
                                             **({"epochs": args.epochs} if args.epochs is not None else {})})
    table = read_image_table(args.source, args.labels)
    result = fit_trajectory(table, args.label, args.out, args.generator, dict(options.get("trajectory") or {}),
                            training, visits=args.visits, interval_years=args.interval, split_dir=args.split)
    print(f"feature-mapping trajectory model for {args.label}: {result['train_subjects']} training subjects "
          f"({result['observed_visits']} observed visits), {result['validation_subjects']} validation; best "
          f"validation loss {result['best_val_loss']:.2f} at epoch {result['best_epoch']}; model in {args.out / 'model'}")


def _longitudinal_generate(args: argparse.Namespace) -> None:
    from medaug.longitudinal.trajectory_workflow import generate_trajectories
    from medaug.longitudinal.workflow import generate_longitudinal, model_folder, written_before_markers
    from medaug.output_folder import check_output

    check_output(args.out, "longitudinal generate", inputs=[args.model_dir], own=written_before_markers)
    folder, kind = model_folder(args.model_dir)
    if kind == "feature-mapping":
        if args.start != "prior":
            raise ConfigError(f"--start is the flow model's; {folder} holds a feature-mapping trajectory model, whose "
                              "λ always comes from a mixture of the training codes (--components)")
        table = generate_trajectories(folder, args.n, args.out, seed=args.seed, start_index=args.start_index,
                                      components=args.components or 5)
    else:
        table = generate_longitudinal(args.model_dir, args.n, args.out, seed=args.seed, start_index=args.start_index,
                                      start=args.start, components=args.components or 4)
    print(f"{table['participant_id'].nunique()} synthetic subjects ({len(table)} sessions) written to {args.out}")


def _longitudinal_impute(args: argparse.Namespace) -> None:
    from medaug.generative.training_data import read_image_table
    from medaug.longitudinal.workflow import impute_longitudinal, written_before_markers
    from medaug.output_folder import check_output

    check_output(args.out, "longitudinal impute", inputs=[args.model_dir, args.source, args.labels],
                 own=written_before_markers)
    table = read_image_table(args.source, args.labels)
    written = impute_longitudinal(args.model_dir, table, args.out, draws=args.draws, seed=args.seed,
                                  sources=[args.source])
    counts = written["kind"].value_counts().to_dict()
    print(f"{counts.get('imputed', 0)} imputed and {counts.get('extrapolated', 0)} extrapolated visits of "
          f"{written['participant_id'].nunique()} subjects written to {args.out}")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("longitudinal", help="longitudinal models: fit, generate, impute",
                                 description="Flow-based longitudinal VAE (thesis ch. 6) on sessions placed on a "
                                             "regular visit grid by age (fit, generate, impute), or the feature-mapping "
                                             "trajectory model (ch. 5) on the features of a trained generator "
                                             "(fit --model feature-mapping, generate).")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    fit = actions.add_parser("fit", help="train on the sequences of one diagnosis (resumes)")
    fit.add_argument("source", type=Path, help="cohort TSV with path and age columns, or a CAPS folder (with --labels)")
    fit.add_argument("--label", required=True, help="diagnosis to model, for example AD")
    fit.add_argument("--out", type=Path, required=True, help="model folder (model/, training_log.tsv, checkpoint.pt)")
    fit.add_argument("--labels", type=Path, default=None, help="labels TSV with ages when SOURCE is a CAPS folder")
    fit.add_argument("--split", type=Path, default=None, metavar="DIR", help="split folder from `medaug split`")
    fit.add_argument("--model", default="flow-vae", choices=("flow-vae", "feature-mapping"),
                     help="flow-vae (ch. 6, default) or feature-mapping (ch. 5: straight lines in a latent space "
                          "mapped to the features of --generator)")
    fit.add_argument("--generator", type=Path, default=None, metavar="DIR",
                     help="feature-mapping: a trained generator's best/ folder (`medaug train-generator`); its "
                          "encoder's means are the visits' features and its decoder makes the images")
    fit.add_argument("--visits", type=count, default=4,
                     help="visits on the grid (flow-vae); visits used per subject and generated (feature-mapping); "
                          "default 4")
    fit.add_argument("--interval", type=bounded("interval", 0.0, above=True, unit=" years"), default=1.0,
                     help="years between grid visits (flow-vae) or generated visits (feature-mapping), > 0 (default 1)")
    fit.add_argument("--size", type=size_triple, default=(84, 104, 89), metavar="X,Y,Z",
                     help="flow-vae image size (feature-mapping: the generator's)")
    fit.add_argument("--prior", default="vae", choices=("vae", "vamp"), help="flow-vae: N(0, I) or VAMP prior on z_0")
    fit.add_argument("--posterior", default="gaussian", choices=("gaussian", "iaf"), help="flow-vae posterior")
    fit.add_argument("--epochs", type=count, default=None)
    fit.add_argument("--config", type=Path, default=None, metavar="YAML",
                     help="flow-vae: generator:, flow: and training: sections (GeneratorConfig / FlowVAEConfig / "
                          "FlowTraining); feature-mapping: trajectory: and training: (TrajectoryConfig / "
                          "TrajectoryTraining)")
    fit.add_argument("--seed", type=seed, default=0, help="in [0, 2^32)")
    fit.set_defaults(handler=_longitudinal_fit, log_folder="out")
    generate = actions.add_parser("generate", help="new synthetic subjects as BIDS sessions")
    generate.add_argument("model_dir", type=Path)
    generate.add_argument("-n", type=image_count, required=True, help="number of subjects (at most 100000 per call)")
    generate.add_argument("--out", type=Path, required=True)
    generate.add_argument("--seed", type=seed, default=0, help="in [0, 2^32)")
    generate.add_argument("--start-index", type=count, default=1, help="first synthetic subject number")
    generate.add_argument("--start", default="prior", choices=("prior", "gmm"),
                          help="z_0 from the prior, or from a Gaussian mixture of the training first-visit codes")
    generate.add_argument("--components", type=count, default=None,
                          help="mixture components: of z_0 with --start gmm (flow-vae, default 4), of λ "
                               "(feature-mapping, default 5)")
    generate.set_defaults(handler=_longitudinal_generate, log_folder="out")
    impute = actions.add_parser("impute", help="impute missing and extrapolate later visits (Alg. 7)")
    impute.add_argument("model_dir", type=Path)
    impute.add_argument("source", type=Path, help="cohort TSV with path and age columns, or a CAPS folder")
    impute.add_argument("--labels", type=Path, default=None)
    impute.add_argument("--out", type=Path, required=True)
    impute.add_argument("--draws", type=count, default=10, help="posterior draws per observed anchor")
    impute.add_argument("--seed", type=seed, default=0, help="in [0, 2^32)")
    impute.set_defaults(handler=_longitudinal_impute, log_folder="out")
