"""The packaged demo study of ``medaug demo``: ``demo.yaml``, a study on a cohort it simulates."""

from importlib.resources import files


def demo_config_text() -> str:
    """The packaged ``demo.yaml`` (output ``study`` and data ``bids``, relative to the file)."""
    return files(__name__).joinpath("demo.yaml").read_text(encoding="utf-8")
