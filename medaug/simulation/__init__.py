"""Simulated data with known ground truth (no download): BIDS cohorts built from the MNI152
anatomy shipped with nilearn (:mod:`~medaug.simulation.example_cohort`, its template anatomy,
tensor primitives and figure) and rotated-digit sequences for the longitudinal models."""
