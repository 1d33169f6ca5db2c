"""Clinica ``t1-linear``-equivalent preprocessing in pure Python (SimpleITK), as MONAI transforms."""

CLINICA_CROP_SHAPE = (169, 208, 179)  # t1-linear's crop grid (1 mm voxels): the largest image medaug makes


def size_problem(size) -> str | None:
    """Why ``size`` is not an image size medaug makes (three whole numbers from 1 up to the crop
    grid's 169×208×179 per axis: resized copies of the crop), else None."""
    if len(size) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in size):
        return f"expected three whole numbers, got {list(size)}"
    if min(size) < 1 or any(v > limit for v, limit in zip(size, CLINICA_CROP_SHAPE)):
        return (f"each axis must be from 1 to the crop grid's {'×'.join(map(str, CLINICA_CROP_SHAPE))}, "
                f"got {'×'.join(map(str, size))}")
    return None
