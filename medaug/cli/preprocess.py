"""``medaug preprocess``: Clinica ``t1-linear`` in pure Python."""

from __future__ import annotations

import argparse
from pathlib import Path

from medaug.cli.common import size_triple
from medaug.errors import ConfigError, InputDataError


def _preprocess(args: argparse.Namespace) -> None:
    from medaug.data.cohort import load_cohort
    from medaug.output_folder import check_output, claim_output
    from medaug.preprocessing.pipeline import T1LinearConfig
    from medaug.preprocessing.runner import CONFIG_FILE, QC_FILE, preprocess_cohort
    from medaug.preprocessing.template import load_registration_template

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be ≥ 1, got {args.jobs}")
    config = T1LinearConfig(template=str(args.template) if args.template else None,
                            template_space=args.template_space, n4=not args.no_n4, write_crop=not args.no_crop,
                            min_ncc=args.min_ncc,
                            size=args.size, **{name: getattr(args, name) for name in LIMITS
                                               if getattr(args, name) is not None})
    output = {"inputs": [args.bids_dir, args.template], "own": lambda folder: (folder / CONFIG_FILE).is_file()}
    check_output(args.out_dir, "preprocess", **output)  # CAPS folders written before markers hold CONFIG_FILE
    if args.template:  # a foreign file is refused before any output exists
        load_registration_template(config.template, space=config.template_space)
    cohort = load_cohort(args.bids_dir, acquisition=args.acq, database_dir=args.index_cache)
    if args.participant:
        cohort = cohort[cohort["participant_id"].isin(_participants(args.participant, cohort, args.bids_dir))]
    claim_output(args.out_dir, "preprocess", **output)
    qc = preprocess_cohort(cohort, args.out_dir, config, sources=[args.bids_dir], jobs=args.jobs)
    print(qc["status"].value_counts().rename_axis("status").reset_index().to_string(index=False))
    print(f"CAPS tree in {args.out_dir}; QC table {args.out_dir / QC_FILE}")
    if len(qc) and (qc["status"] == "failed").all():
        raise InputDataError(f"every image failed t1-linear ({len(qc)} of {len(qc)}; reasons in "
                             f"{args.out_dir / QC_FILE}), first {qc['participant_id'].iloc[0]}: {qc['reason'].iloc[0]}")


def _participants(wanted: list[str], cohort, bids_dir: Path) -> set[str]:
    """``--participant`` values as participant ids (``sub-`` optional); one the cohort lacks is refused."""
    ids = {value if value.startswith("sub-") else f"sub-{value}" for value in wanted}
    known = sorted(set(cohort["participant_id"]))
    unknown = sorted(ids - set(known))
    if unknown:
        raise InputDataError(f"--participant {', '.join(unknown)}: no T1w image of {bids_dir} belongs to "
                             f"{'this participant' if len(unknown) == 1 else 'these participants'} (participants "
                             f"there: {', '.join(known[:5])}{' …' if len(known) > 5 else ''}); check the id")
    return ids


LIMITS = ("max_seconds_per_image", "max_memory_gb", "spacing_range_mm", "max_field_of_view_mm")


def _spacing_range(value: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected MIN,MAX in mm, for example 0.05,10") from None
    return low, high


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "preprocess", help="Clinica t1-linear equivalent (N4, affine to MNI, crop) into a CAPS-like tree",
        description="N4 bias correction, rigid + affine registration to the MNI152 template and resampling "
                    "onto Clinica's 169×208×179 crop grid, in pure Python (SimpleITK). Re-running skips "
                    "finished images; failures are recorded in the QC table.")
    parser.add_argument("bids_dir", type=Path)
    parser.add_argument("out_dir", type=Path, help="CAPS-like output folder (outside the BIDS dataset)")
    parser.add_argument("--size", type=size_triple, default=None, metavar="X,Y,Z",
                        help="also write a resized, min-max rescaled copy, for example 84,104,89")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="images processed in parallel")
    parser.add_argument("--template", type=Path, default=None, metavar="NIFTI",
                        help="template T1w (default: nilearn's MNI152 2009a, no download)")
    parser.add_argument("--template-space", default=None, metavar="LABEL",
                        help="space- label of --template when its name has no tpl- entity")
    parser.add_argument("--no-n4", action="store_true", help="skip N4 bias-field correction")
    parser.add_argument("--no-crop", action="store_true",
                        help="keep only the --size copy, not the 1 mm crop image (22 MB less per image)")
    parser.add_argument("--min-ncc", type=float, default=0.5, help="QC threshold on NCC with the template")
    limits = parser.add_argument_group("per-image limits (an image outside them is recorded as failed; "
                                       "defaults: T1LinearConfig's)")
    limits.add_argument("--max-seconds-per-image", type=float, metavar="S",
                        help="kill an image's worker after S seconds (default 600)")
    limits.add_argument("--max-memory-gb", type=float, metavar="GB",
                        help="refuse images whose working memory, estimated from the header, exceeds GB (default 8)")
    limits.add_argument("--spacing-range-mm", type=_spacing_range, metavar="MIN,MAX",
                        help="plausible voxel spacing (default 0.05,10)")
    limits.add_argument("--max-field-of-view-mm", type=float, metavar="MM",
                        help="largest field of view per axis (default 600)")
    parser.add_argument("--participant", nargs="+", default=None, metavar="SUB", help="only these participants")
    parser.add_argument("--acq", default=None, help="keep only T1w images with this acq- label")
    parser.add_argument("--index-cache", type=Path, default=None, metavar="DIR")
    parser.set_defaults(handler=_preprocess, log_folder="out_dir")
