"""Indexing speed of ``load_cohort`` on a large placeholder BIDS dataset.

Builds N subjects × 3 sessions of 0-byte T1w placeholders (like the public BIDS example layouts)
with participants.tsv and per-subject sessions.tsv, then times, side by side:
1. the first indexing with a persistent pybids index (target: under 60 s for 1000 subjects);
2. the same call again, reading the index cache (target: under 5 s);
3. a call without index cache, for the ratio.

Run: python benchmarks/cohort_indexing.py [--subjects 1000]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from medaug.data.cohort import load_cohort

SESSIONS = ("M000", "M012", "M024")


def placeholder_dataset(root: Path, subjects: int) -> Path:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "placeholders", "BIDSVersion": "1.10.0"}))
    rows = ["participant_id\tdiagnosis_bl\tage_bl\tsex"]
    for index in range(subjects):
        sub = f"sub-P{index:05d}"
        rows.append(f"{sub}\t{'CN' if index % 2 else 'AD'}\t{60 + index % 30}\t{'MF'[index % 2]}")
        sessions = ["session_id\tdiagnosis\tage"]
        for months, ses in zip((0, 12, 24), SESSIONS):
            anat = root / sub / f"ses-{ses}" / "anat"
            anat.mkdir(parents=True)
            (anat / f"{sub}_ses-{ses}_T1w.nii.gz").touch()
            sessions.append(f"ses-{ses}\t{'CN' if index % 2 else 'AD'}\t{60 + index % 30 + months / 12}")
        (root / sub / f"{sub}_sessions.tsv").write_text("\n".join(sessions) + "\n")
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    return root


def timed(call):
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bids = placeholder_dataset(Path(tmp) / "bids", args.subjects)
        index = Path(tmp) / "index"
        cold, t_cold = timed(lambda: load_cohort(bids, database_dir=index))
        warm, t_warm = timed(lambda: load_cohort(bids, database_dir=index))
        _, t_none = timed(lambda: load_cohort(bids))
        assert len(cold) == len(warm) == 3 * args.subjects
        print(f"{args.subjects} subjects × {len(SESSIONS)} sessions = {len(cold)} images")
        print(f"first indexing (writes index)  {t_cold:7.2f} s   (target < 60 s)")
        print(f"from index cache               {t_warm:7.2f} s   (target < 5 s)")
        print(f"no index cache                 {t_none:7.2f} s")
        print(f"speed-up of the cache over no cache: ×{t_none / t_warm:.1f}")


if __name__ == "__main__":
    main()
