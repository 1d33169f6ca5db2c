"""medaug: geometry-aware generative data augmentation for 3D brain MRI.

BIDS cohorts and preprocessing feed per-class generators (VAE, RHVAE, ...) whose synthetic
images are merged into balanced training sets for a classifier evaluated over repeated runs.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
