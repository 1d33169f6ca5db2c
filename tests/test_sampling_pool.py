"""The pool path shared by `medaug generate` and the study: the novelty filter and the score files."""

import pandas as pd
import pytest
import torch

from medaug.errors import ConfigError
from medaug.generative.config import GeneratorConfig
from medaug.generative.models import build_model
from medaug.sampling.pool import draw_pool, novelty_seed
from medaug.sampling.quality import novel
from medaug.sampling.samplers import build_sampler

TRAIN = torch.rand(12, 1, 4, 4, generator=torch.Generator().manual_seed(0))


def _model():
    torch.manual_seed(0)
    return build_model(GeneratorConfig(input_shape=(1, 4, 4), model="vae", latent_dim=2, hidden=(8,)))


def test_without_a_novelty_quantile_the_pool_is_the_samplers_own_draw():
    sampler = build_sampler("jitter", noise_std=0.0).fit(_model(), TRAIN)
    latents, diagnostics = draw_pool(sampler, 5, seed=3, train=TRAIN)
    assert torch.equal(latents, sampler.draw(5, seed=3)[0]) and "novelty" not in diagnostics


def test_the_novelty_filter_drops_near_copies_draws_more_and_counts_them():
    sampler = build_sampler("jitter", noise_std=0.35).fit(_model(), TRAIN)
    latents, diagnostics = draw_pool(sampler, 20, seed=3, train=TRAIN, novelty_quantile=0.5)
    counts = diagnostics["novelty"]
    kept, threshold = novel(torch.cat(list(sampler.decode(latents))), TRAIN, 0.5)
    assert len(latents) == 20 and bool(kept.all()) and counts["threshold"] == pytest.approx(threshold)
    assert counts["dropped"] > 0 and counts["drawn"] % 20 == 0 and counts["drawn"] - counts["dropped"] >= 20
    # the first draw's novel samples come first, in order: the filter only removes
    first = sampler.draw(20, seed=3)[0]
    first_kept = first[novel(torch.cat(list(sampler.decode(first))), TRAIN, 0.5)[0]]
    assert torch.equal(latents[:len(first_kept)], first_kept)
    assert novelty_seed(3, 0) == 3 and novelty_seed(3, 1) != 3


def test_a_pool_of_copies_is_refused_by_the_novelty_filter_with_the_counts():
    sampler = build_sampler("jitter", noise_std=0.0).fit(_model(), TRAIN)
    with pytest.raises(ConfigError, match=r"only 0 of 400 samples .* lower novelty_quantile"):
        draw_pool(sampler, 20, seed=3, train=TRAIN, novelty_quantile=0.05)


def test_generate_writes_the_per_sample_audit_and_honours_the_novelty_filter(tiny_cohort, tmp_path, capsys):
    import json

    from medaug.cli import main

    table = tmp_path / "cohort.tsv"
    assert main(["cohort", str(tiny_cohort[0]), "-o", str(table)]) == 0
    config = tmp_path / "gen.yaml"
    config.write_text("generator:\n  input_shape: [1, 12, 14, 12]\n  model: vae\n  latent_dim: 2\n  hidden: [16]\n"
                      "trainer:\n  max_steps: 2\n  batch_size: 4\n")
    assert main(["train-generator", str(table), "--label", "AD", "--out", str(tmp_path / "ad"),
                 "--config", str(config)]) == 0
    out = tmp_path / "jitter"
    assert main(["generate", str(tmp_path / "ad"), "--sampler", "jitter", "--noise-std", "0.3", "-n", "4",
                 "--out", str(out), "--seed", "2", "--novelty-quantile", "0.2"]) == 0
    assert "novel / copies / averages" in capsys.readouterr().out
    quality = json.loads((out / "synthetic_AD_seed2.quality.json").read_text())
    assert quality["novelty_quantile"] == 0.2 and quality["novelty_drawn"] >= 4
    nearest = pd.read_csv(out / "synthetic_AD_seed2.nearest.tsv", sep="\t")
    assert len(nearest) == 4 and (nearest["nearest_distance"] >= quality["novelty_threshold"]).all()
    assert set(nearest["kind"]) <= {"novel", "copy", "average"}
    with pytest.raises(SystemExit) as refused:
        main(["generate", str(tmp_path / "ad"), "--sampler", "jitter", "-n", "4", "--out", str(tmp_path / "x"),
              "--novelty-quantile", "1.5"])
    assert refused.value.code == 2 and "expected a number in (0, 1), got '1.5'" in capsys.readouterr().err
