"""modelserve's Python API.

    import modelserve
    modelserve.publish(pipeline, name="churn", inputs=X_train, X_test=X_test, y_test=y_test)

``publish`` writes a new version folder into a model repository that ``modelserve
serve`` (or a running server's hot reload) serves; ``load`` reads one back the way the
server does. README.md ("Serve your own model") walks through it.
"""

from __future__ import annotations

from service.loader import load_version as load
from training.publishing import FeatureNote, ImageNote, PublishError, VersionExistsError, publish

__all__ = ["FeatureNote", "ImageNote", "PublishError", "VersionExistsError", "load", "publish"]
