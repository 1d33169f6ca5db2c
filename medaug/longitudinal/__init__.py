"""Longitudinal synthesis: per-subject sequences with missing visits, trajectory models, imputation."""
