"""``medaug cohort``: index a BIDS dataset into a cohort table."""

from __future__ import annotations

import argparse
from pathlib import Path

from medaug.errors import ConfigError


def _cohort(args: argparse.Namespace) -> None:
    from medaug.data.clinica import write_labels
    from medaug.data.cohort import load_cohort, summarize_table
    from medaug.data.selection import baseline_sessions, stable_diagnosis
    from medaug.io import write_tsv

    for output in filter(None, (args.output, args.labels)):
        if output.resolve().is_relative_to(args.bids_dir.resolve()):
            raise ConfigError(f"{output} is inside the input dataset {args.bids_dir}; write it elsewhere")
    needs_diagnosis = bool(args.labels or args.stable_diagnosis)  # indexing alone needs none
    cohort = load_cohort(args.bids_dir, acquisition=args.acq, database_dir=args.index_cache,
                         require_diagnosis=needs_diagnosis)
    if not needs_diagnosis and cohort["diagnosis"].isna().all():
        print(f"{args.bids_dir} records no diagnosis (participants.tsv or sessions.tsv): indexed with the diagnosis "
              "column empty; a study, --labels and --stable-diagnosis need one")
    if args.stable_diagnosis:
        cohort = stable_diagnosis(cohort)
    if args.baseline:
        cohort = baseline_sessions(cohort)
    write_tsv(args.output, cohort)
    if args.labels:
        write_labels(cohort, args.labels)
    print(summarize_table(cohort).to_string(index=False))
    print(f"{len(cohort)} images written to {args.output}" + (f" and {args.labels}" if args.labels else ""))


def add_parser(commands: argparse._SubParsersAction) -> None:
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
