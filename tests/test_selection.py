import pandas as pd

from medaug.data.selection import baseline_sessions, stable_diagnosis


def _table():
    return pd.DataFrame({
        "participant_id": ["sub-01", "sub-01", "sub-01", "sub-02", "sub-02", "sub-03", "sub-03"],
        # month order differs from string order (M6 < M12 < M100), and ses-M00 / ses-M000 both occur
        "session_id": ["ses-M12", "ses-M6", "ses-M100", "ses-M000", "ses-M024", "ses-M00", "ses-M06"],
        "diagnosis": ["CN", "CN", "CN", "MCI", "AD", "AD", None],
        "age": [71.0, 70.5, 78.3, 80.0, 82.0, 65.0, 65.5]})


def test_baseline_is_the_earliest_visit_month():
    baseline = baseline_sessions(_table())
    assert baseline["session_id"].tolist() == ["ses-M6", "ses-M000", "ses-M00"]
    # labels without a month fall back to age
    table = _table().assign(session_id=["ses-b", "ses-a", "ses-c", "ses-x", "ses-y", "ses-p", "ses-q"])
    table.loc[0, "age"] = 60.0
    assert baseline_sessions(table)["session_id"].tolist() == ["ses-b", "ses-x", "ses-p"]


def test_stable_diagnosis_drops_converters_and_unknowns():
    stable = stable_diagnosis(_table())
    assert stable["participant_id"].unique().tolist() == ["sub-01"]
    assert len(stable) == 3
