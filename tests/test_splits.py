import numpy as np
import pandas as pd
import pytest
from scipy import stats

from medaug.data.splits import (
    SplitConfig,
    assert_disjoint,
    balance_p_values,
    load_split,
    save_split,
    split_subjects,
)
from medaug.errors import BalanceError, ConfigError, InputDataError, LeakageError


def _cohort(n_per_label=40, sessions=2, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for label, age in (("CN", 73), ("AD", 75)):
        for i in range(n_per_label):
            pid = f"sub-{label}{i:03d}"
            a, sex, site = rng.normal(age, 6), rng.choice(["M", "F"]), rng.choice(["S1", "S2", "S3"])
            for s in range(sessions):
                rows.append({"participant_id": pid, "session_id": f"ses-M{12 * s:03d}", "diagnosis": label,
                             "age": a + s, "sex": sex, "site": site, "path": f"{pid}_{s}.nii.gz"})
    return pd.DataFrame(rows)


def test_split_is_subject_level_stratified_balanced_and_seeded():
    cohort = _cohort()
    config = SplitConfig(test_per_label=10, train_n=8, seed=3, p_threshold=0.5)
    subjects = split_subjects(cohort, config)
    assert len(subjects) == 80 and subjects["participant_id"].is_unique
    test = subjects[subjects["split"] == "test"]
    assert test["diagnosis"].value_counts().to_dict() == {"AD": 10, "CN": 10}
    rest = subjects[subjects["split"] != "test"]
    val_share = (rest["split"] == "validation").mean()
    assert val_share == pytest.approx(0.2, abs=0.03)
    assert subjects[subjects["train_n"]]["diagnosis"].value_counts().to_dict() == {"AD": 8, "CN": 8}
    assert (subjects[subjects["train_n"]]["split"] == "train").all()
    train = subjects[subjects["split"] == "train"]
    for label in ("CN", "AD"):  # the balance criterion, recomputed with scipy directly
        t, r = test[test["diagnosis"] == label], train[train["diagnosis"] == label]
        assert stats.ttest_ind(t["age"], r["age"]).pvalue >= 0.5
    assert balance_p_values(test, train)["p_sex"] >= 0.5
    assert split_subjects(cohort, config).equals(subjects)
    assert not split_subjects(cohort, SplitConfig(test_per_label=10, train_n=8, seed=4, p_threshold=0.5)).equals(subjects)


def test_save_and_reload_round_trip(tmp_path):
    config = SplitConfig(test_per_label=5, seed=1, p_threshold=0.3)
    subjects = split_subjects(_cohort(20), config)
    save_split(subjects, config, tmp_path / "split")
    again, config_again = load_split(tmp_path / "split")
    assert config_again == config
    pd.testing.assert_frame_equal(again.reset_index(drop=True), subjects.reset_index(drop=True), check_dtype=False)
    report = pd.read_csv(tmp_path / "split" / "balance.tsv", sep="\t")
    assert set(report["split"]) == {"train", "validation", "test"}


def test_assert_disjoint_fails_loudly():
    assert_disjoint(train=["sub-1", "sub-2"], test=pd.DataFrame({"participant_id": ["sub-3"]}))
    with pytest.raises(LeakageError, match="sub-2 is in both train and test"):
        assert_disjoint(train=["sub-1", "sub-2"], test=["sub-2"])


def test_impossible_requests_give_clear_errors():
    with pytest.raises(InputDataError, match="label AD has 6 subjects"):
        split_subjects(_cohort(6), SplitConfig(test_per_label=5))
    with pytest.raises(BalanceError, match="lower p_threshold"):
        split_subjects(_cohort(40), SplitConfig(test_per_label=10, p_threshold=0.999, max_tries=5))
    with pytest.raises(ConfigError):
        SplitConfig(test_per_label=-1)
    missing = _cohort(10)
    missing.loc[0, "diagnosis"] = np.nan
    with pytest.raises(InputDataError, match="sub-CN000 has no diagnosis"):
        split_subjects(missing, SplitConfig(test_per_label=2))
