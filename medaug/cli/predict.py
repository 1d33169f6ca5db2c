"""``medaug predict``: apply a study's saved classifier(s) to new subjects."""

from __future__ import annotations

import argparse
from pathlib import Path

from medaug.cli.common import count


def _predict(args: argparse.Namespace) -> None:
    from medaug.study.predict import PREDICTIONS_FILE, predict

    result = predict(args.study_dir, args.input, args.out, classifier=args.classifier, condition=args.condition,
                     ensemble=args.ensemble, labels_tsv=args.labels, jobs=args.jobs, device=args.device)
    table = result.predictions
    counts = table["status"].value_counts()
    print(f"{counts.get('predicted', 0)} image(s) predicted, {counts.get('refused', 0)} refused, by "
          f"{', '.join(result.models)}: {args.out / PREDICTIONS_FILE}")
    if result.metrics is not None:
        for row in result.metrics.itertuples():
            print(f"{row.test_set + f' ({row.subjects} subjects)':<40} balanced accuracy "
                  f"{100 * row.balanced_accuracy:5.1f} [{100 * row.ci_low:.1f}, {100 * row.ci_high:.1f}]")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "predict", help="predict the diagnosis of new subjects with a study's saved classifier",
        description="Preprocess the images of a BIDS dataset as the study did (or read a CAPS folder of Clinica's "
                    "t1-linear), refuse those that fail QC or that the study trained on, and write each image's "
                    "class probabilities and predicted label to OUT/predictions.tsv; with diagnoses, also the "
                    "metrics with their 95%% CI on one image per subject (OUT/metrics.tsv), beside the same models' on the study's test set. By default the classifier, condition and run "
                    "that the study's validation split chose (models.tsv).")
    parser.add_argument("study_dir", type=Path, help="output folder of `medaug run`")
    parser.add_argument("input", type=Path, help="BIDS dataset, or CAPS folder (subjects/sub-*/[ses-*/]t1_linear)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (new, or an earlier prediction)")
    parser.add_argument("--classifier", default=None, help="saved classifier (default: the validation's choice)")
    parser.add_argument("--condition", default=None, help="training-set condition, for example real or "
                        "real+synthetic-rhvae-hmc-20 (default: the validation's choice)")
    parser.add_argument("--ensemble", action="store_true", help="average the probabilities of all runs")
    parser.add_argument("--labels", default=None, metavar="TSV",
                        help="ClinicaDL labels TSV of the input (diagnoses; needed to name a CAPS input's labels)")
    parser.add_argument("--jobs", type=count, default=1, help="images preprocessed in parallel")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.set_defaults(handler=_predict, log_folder="out")
