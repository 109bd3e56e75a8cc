"""Publishing: a fitted scikit-learn estimator or Keras model -> a served, versioned,
documented model version (``publish``), and the ``modelserve publish`` command for
models already saved to disk."""

from training.publishing.publish import VersionExistsError, existing_versions, next_version, publish
from training.publishing.schema import FeatureNote, ImageNote, PublishError

__all__ = ["FeatureNote", "ImageNote", "PublishError", "VersionExistsError",
           "existing_versions", "next_version", "publish"]
