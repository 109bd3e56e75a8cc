"""Each trainer runs end to end on a slice of the real data and publishes a version the
loader accepts; publishing is atomic and never overwrites."""

from __future__ import annotations

import pytest

from service.loader import load_version
from training import auscultation, digits, housing, wine_quality
from training.publishing import VersionExistsError

TRAINERS = [digits, wine_quality, housing, auscultation]


@pytest.mark.parametrize("module", TRAINERS, ids=lambda m: m.__name__.split(".")[-1])
def test_trainer_publishes_loadable_versions(module, data_dir, tmp_path):
    repo = tmp_path / "models"
    for expected_version, recipe in enumerate(module.RECIPES, start=1):
        trained = module.train(recipe, data_dir, quick=True)
        folder = trained.publish(repo, allow_below_baseline=True)  # a smoke run
        assert folder == repo / trained.name / str(expected_version)
        model = load_version(folder)
        assert model.manifest.provenance.trainer.endswith(f"recipe={recipe}")
        assert model.manifest.evaluation.test_metrics
        assert all(d.sha256 for d in model.manifest.evaluation.datasets)
        assert (folder / "MODEL_CARD.md").read_text().startswith(f"# {trained.name}")
    # Nothing half-written is left behind.
    assert not list((repo / trained.name).glob(".staging-*"))


def test_publish_never_overwrites(data_dir, tmp_path):
    trained = wine_quality.train("forest", data_dir, quick=True)
    folder = trained.publish(tmp_path, version=3, allow_below_baseline=True)
    before = (folder / "manifest.json").read_bytes()
    with pytest.raises(VersionExistsError):
        trained.publish(tmp_path, version=3, allow_below_baseline=True)
    assert (folder / "manifest.json").read_bytes() == before
    assert not list(folder.parent.glob(".staging-*"))
    assert trained.publish(tmp_path, allow_below_baseline=True).name == "4"
