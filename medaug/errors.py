"""Domain exceptions raised by medaug.

Every message names the offending file, subject or parameter and says how to fix it. The CLI
turns :class:`MedaugError` subclasses into a one-line message and a non-zero exit code instead
of a traceback.
"""


class MedaugError(Exception):
    """Base class of every error medaug raises on purpose."""

    exit_code = 1


class ConfigError(MedaugError, ValueError):
    """A parameter or configuration value is invalid (wrong type, out of range, unknown key)."""

    exit_code = 2


class InputDataError(MedaugError):
    """An input file or dataset is missing, unreadable or not what was expected."""

    exit_code = 2


class OutputExistsError(MedaugError):
    """An output location holds data that medaug will not overwrite."""

    exit_code = 2


class LeakageError(MedaugError):
    """A participant appears in two splits that must be disjoint (train / validation / test)."""


class BalanceError(MedaugError):
    """No split draw met the demographic-balance threshold within the allowed number of tries."""

    exit_code = 2


class StudyTaskError(MedaugError):
    """Some study tasks failed (listed in the run folder's ``failed_tasks.tsv``); the others are kept."""


class TrainingDivergedError(MedaugError):
    """A training loss or validation score became NaN or infinite (:mod:`medaug.training`); the
    message names the epoch and the fix, and the best weights saved so far are left untouched."""


class UninformativeGeneratorError(MedaugError):
    """A generator's posterior carries no information about its training images (posterior
    collapse): every latent code decodes to nearly one image, so no sampler can make new ones."""

    exit_code = 2


class WorkerStartupError(MedaugError):
    """Worker processes cannot start: the main script would start them again in every worker (no
    ``if __name__ == "__main__":`` guard around the call); raised before any worker starts."""

    exit_code = 2
