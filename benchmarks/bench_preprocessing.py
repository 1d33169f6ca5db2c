"""medaug t1-linear (SimpleITK) vs ANTsPy on simulated cohorts with known poses, side by side.

For each input resolution, simulate N subjects per label (baseline only), then per image:
- medaug: N4 + rigid/affine registration (default config); ANTsPy: ``ants.n4_bias_field_correction``
  then ``ants.registration(type_of_transform='Affine')`` to the same template;
- registration error: mean displacement over template brain voxels between the estimated and the
  true template → image transform (the simulation's scanner pose; its small non-linear deformation
  is a floor neither method can remove);
- white-matter intensity coefficient of variation on the crop grid (template WM probability > 0.9),
  before and after medaug's N4.

Run: python benchmarks/bench_preprocessing.py [--subjects-per-label 2] [--resolutions 1,2,3] [--no-ants]
Needs the `bench` extra for ANTsPy (pip install -e '.[bench]').
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
import torch

from medaug.data.cohort import load_image
from medaug.simulation.example_cohort import (
    ExampleCohortConfig, build_example_cohort, read_scanner_to_template, t1w_path)
from medaug.preprocessing.bias import n4_correct
from medaug.preprocessing.registration import register_affine, resample_to_grid
from medaug.preprocessing.sitk_image import RAS_TO_LPS, to_sitk
from medaug.preprocessing.template import CLINICA_CROP_GRID, load_registration_template

THREADS = 2


def registration_error(template_to_image, truth, points):
    return float(np.linalg.norm((template_to_image - np.linalg.inv(truth)) @ points, axis=0).mean())


def wm_cv(image, template_to_image, wm_mask):
    values = resample_to_grid(image, template_to_image, CLINICA_CROP_GRID)[wm_mask]
    return float(values.std() / values.mean())


def ants_run(path, template_file):
    import ants

    start = time.perf_counter()
    moving = ants.n4_bias_field_correction(ants.image_read(str(path)))
    fixed = ants.image_read(str(template_file))
    result = ants.registration(fixed=fixed, moving=moving, type_of_transform="Affine")
    seconds = time.perf_counter() - start
    transform = ants.read_transform(result["fwdtransforms"][0])
    params, centre = np.asarray(transform.parameters), np.asarray(transform.fixed_parameters)
    matrix = params[:9].reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = matrix
    lps[:3, 3] = params[9:12] + centre - matrix @ centre
    return RAS_TO_LPS @ lps @ RAS_TO_LPS, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects-per-label", type=int, default=2)
    parser.add_argument("--resolutions", default="1,2,3")
    parser.add_argument("--no-ants", action="store_true")
    args = parser.parse_args()
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(THREADS)
    torch.set_num_threads(THREADS)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(THREADS)
    template = load_registration_template()
    brain = np.argwhere(template.brain_mask)
    points = template.affine @ np.c_[brain, np.ones(len(brain))].T
    from nilearn import datasets

    wm = nib.as_closest_canonical(datasets.load_mni152_wm_template(resolution=1))
    wm_mask = resample_to_grid(to_sitk(wm.get_fdata(dtype=np.float32), wm.affine), np.eye(4), CLINICA_CROP_GRID) > 0.9
    use_ants = not args.no_ants
    if use_ants:
        try:
            import ants  # noqa: F401
        except ImportError:
            print("ANTsPy not installed (pip install -e '.[bench]'): medaug only")
            use_ants = False
    with tempfile.TemporaryDirectory() as tmp:
        template_file = Path(tmp) / "template.nii.gz"
        nib.save(nib.Nifti1Image(template.voxels, template.affine), template_file)
        print(f"{'res':>4} {'image':>22} {'medaug s':>9} {'err mm':>7} {'WM CV raw→N4':>14}"
              + (f" {'ANTs s':>8} {'err mm':>7}" if use_ants else ""))
        for resolution in (float(r) for r in args.resolutions.split(",")):
            bids = Path(tmp) / f"bids_{resolution}"
            build_example_cohort(bids, ExampleCohortConfig(subjects_per_label=args.subjects_per_label,
                                                           resolution_mm=resolution, seed=11), jobs=THREADS)
            rows = []
            for subject in sorted(p.name for p in bids.glob("sub-*")):
                path = t1w_path(bids, subject, "ses-M000")
                truth = read_scanner_to_template(bids, subject, "ses-M000")
                voxels, affine = load_image(path)
                raw = to_sitk(voxels, affine)
                start = time.perf_counter()
                corrected, _ = n4_correct(raw)
                result = register_affine(corrected, template)
                seconds = time.perf_counter() - start
                error = registration_error(result.template_to_image, truth, points)
                cv_raw, cv_n4 = (wm_cv(im, result.template_to_image, wm_mask) for im in (raw, corrected))
                row = [seconds, error, cv_raw, cv_n4]
                line = f"{resolution:>4} {subject + ' ses-M000':>22} {seconds:9.1f} {error:7.2f} {cv_raw:6.3f}→{cv_n4:6.3f}"
                if use_ants:
                    matrix, ants_seconds = ants_run(path, template_file)
                    ants_error = registration_error(matrix, truth, points)
                    row += [ants_seconds, ants_error]
                    line += f" {ants_seconds:8.1f} {ants_error:7.2f}"
                print(line, flush=True)
                rows.append(row)
            table = np.array(rows)
            summary = (f"{resolution:>4} {'median':>22} {np.median(table[:, 0]):9.1f} {np.median(table[:, 1]):7.2f} "
                       f"{np.median(table[:, 2]):6.3f}→{np.median(table[:, 3]):6.3f}")
            if use_ants:
                summary += (f" {np.median(table[:, 4]):8.1f} {np.median(table[:, 5]):7.2f}   "
                            f"time ratio ANTs/medaug ×{np.median(table[:, 4]) / np.median(table[:, 0]):.2f}")
            print(summary, flush=True)


if __name__ == "__main__":
    main()
