"""Clinica ``t1-linear``-equivalent preprocessing in pure Python (SimpleITK), as MONAI transforms."""
