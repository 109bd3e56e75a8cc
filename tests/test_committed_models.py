"""Every committed version loads and reproduces the outputs its manifest recorded."""

from __future__ import annotations

import numpy as np
import pytest

from service.loader import load_version
from tests.conftest import MODELS, committed_versions

EXPECTED = {"digits", "wine-quality", "housing", "auscultation"}


def test_four_models_with_at_least_two_versions_each():
    found: dict[str, list[str]] = {}
    for folder in committed_versions():
        found.setdefault(folder.parent.name, []).append(folder.name)
    assert set(found) == EXPECTED
    assert all(len(v) >= 2 for v in found.values()), found


@pytest.mark.parametrize("folder", committed_versions(), ids=lambda p: f"{p.parent.name}-{p.name}")
def test_committed_version_loads_and_reproduces_samples(folder):
    # load_version runs the manifest's samples and refuses on any disagreement;
    # check_samples is called again here so the test states what it checks.
    model = load_version(folder)
    assert model.check_samples() == []
    assert (folder / "MODEL_CARD.md").is_file()
    assert list(folder.glob("*.png")), "the model card has plots"


def test_digits_v2_accuracy_on_official_test_images(data_dir):
    from training.data import load_mnist

    images, labels = load_mnist(data_dir, "test")
    model = load_version(MODELS / "digits" / "2")
    out = model.predict(images[:1000].astype(np.float32))
    accuracy = float((out["class_id"] == labels[:1000]).mean())
    assert accuracy >= 0.985, accuracy


def test_manifest_metrics_match_a_fresh_evaluation(data_dir):
    """The manifest's numbers are the run's numbers: re-score the committed wine v2 artifact
    on the reference split and compare."""
    from sklearn.model_selection import train_test_split

    from training.data import load_wine
    from training.publishing.evaluate import classification_metrics

    x, quality, _ = load_wine(data_dir)
    _, x_te, _, y_te = train_test_split(x, (quality >= 6).astype(int), random_state=42)
    model = load_version(MODELS / "wine-quality" / "2")
    got = classification_metrics(y_te, model.predict(x_te)["probabilities"])
    recorded = model.manifest.evaluation.test_metrics
    assert got["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-6)
    assert got["roc_auc"] == pytest.approx(recorded["roc_auc"], abs=1e-4)
