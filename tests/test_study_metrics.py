import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from medaug.study.metrics import classification_metrics


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 20)), min_size=4, max_size=60))
def test_metrics_match_scikit_learn(rows):
    truth = np.array(["AD" if t else "CN" for t, _, _ in rows])
    predicted = np.array(["AD" if p else "CN" for _, p, _ in rows])
    score = np.array([s / 20 for _, _, s in rows])  # ties included
    if len(set(truth)) < 2:
        return
    result = classification_metrics(truth, predicted, score, positive="AD")
    y, yhat = truth == "AD", predicted == "AD"
    assert result["sensitivity"] == pytest.approx(skm.recall_score(y, yhat))
    assert result["specificity"] == pytest.approx(skm.recall_score(~y, ~yhat))
    assert result["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, yhat))
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, yhat))
    assert result["f1"] == pytest.approx(skm.f1_score(y, yhat, zero_division=0))
    assert result["auc"] == pytest.approx(skm.roc_auc_score(y, score))


def test_positive_class_is_configurable():
    truth, predicted = ["AD", "AD", "CN", "CN"], ["AD", "CN", "CN", "CN"]
    ad = classification_metrics(truth, predicted, positive="AD")
    cn = classification_metrics(truth, predicted, positive="CN")
    assert ad["sensitivity"] == cn["specificity"] == 0.5 and ad["specificity"] == cn["sensitivity"] == 1.0
