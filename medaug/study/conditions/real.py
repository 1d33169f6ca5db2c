"""Real images only: the reference of every comparison."""

from __future__ import annotations

from medaug.study.conditions import CONDITIONS, ConditionKind, Part


@CONDITIONS.register
class Real(ConditionKind):
    """The real training images only (the reference of every comparison)."""

    name = "real"
    gan_test = True
    colour = "0.5"

    @classmethod
    def parts(cls, condition, real, labels, synthetic, seed):
        return [Part(real, labels, False)]
