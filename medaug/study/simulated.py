"""``data.simulate``: the study's BIDS folder is an example cohort, simulated where it is missing.

A complete cohort (settings recorded in ``code/medaug_example_cohort.json`` equal to the study's,
every image of its ground truth present) is used as it is, without writing to it; an unfinished
one is resumed (finished subjects are kept); a folder built with other settings, or holding
anything else, is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from medaug.errors import ConfigError, InputDataError, OutputExistsError
from medaug.provenance import read_json_object
from medaug.run_folder import LOCK_FILE
from medaug.simulation.example_cohort import (CONFIG_FILE, GROUND_TRUTH_DIR, ExampleCohortConfig, build_example_cohort,
                                             t1w_path)
from medaug.study.config import SimulatedCohort

logger = logging.getLogger(__name__)


def ensure_simulated_cohort(bids: str, settings: SimulatedCohort, run_dir: Path) -> None:
    """Build, resume or check the simulated cohort at ``bids`` (outside the study's ``run_dir``)."""
    bids = Path(bids)
    if bids.resolve().is_relative_to(run_dir.resolve()):
        raise ConfigError(f"data.bids {bids} is inside the output folder {run_dir}: the simulated cohort would mix "
                          "with the study's files; put it beside the output (for example data.bids: ../bids) and "
                          f"delete {run_dir}, which holds only the config this run recorded")
    current = settings.cohort_config().to_dict()
    record = bids / CONFIG_FILE
    if record.is_file():
        fix = "delete the folder to simulate it again, or set data.bids to a new folder"
        # options added since the cohort was simulated hold their defaults in it
        recorded = {**ExampleCohortConfig().to_dict(), **(read_json_object(record, fix).get("config") or {})}
        changed = sorted(k for k in set(current) | set(recorded) if recorded.get(k) != current.get(k))
        if changed:
            raise OutputExistsError(f"{bids} holds a cohort simulated with other data.simulate settings "
                                    f"({', '.join(changed)} differ; see {record}); restore them or set data.bids "
                                    "to a new folder")
        if _complete(bids, fix):
            logger.info("simulated cohort %s is complete", bids)
            return
    elif bids.exists() and any(path.name != LOCK_FILE for path in bids.iterdir()):  # a lock: a build under way
        raise OutputExistsError(f"data.bids {bids} is not empty and is not a simulated cohort; data.simulate builds "
                                "its cohort in a new or empty folder: set data.bids to one, or remove data.simulate "
                                "to use the dataset there")
    build_example_cohort(bids, settings.cohort_config(), jobs=settings.jobs)


def _complete(bids: Path, fix: str) -> bool:
    """Whether the cohort's last file is written; a finished cohort missing an image is refused."""
    truth = bids / GROUND_TRUTH_DIR
    if not (truth / "ground_truth.json").is_file():  # written last
        return False
    rows = pd.read_csv(truth / "ground_truth.tsv", sep="\t", usecols=["participant_id", "session_id"])
    missing = [path for path in (t1w_path(bids, *row) for row in rows.itertuples(index=False)) if not path.is_file()]
    if missing:
        raise InputDataError(f"the simulated cohort {bids} lacks {len(missing)} of its images ({missing[0]} …); {fix}")
    return True
