"""Which loaded version answers a request: the labelled or given version, else the
canary split's pick, else the newest available version.

Threads: the poll thread and the loader threads publish (under the repository's
publish lock) new immutable ``ModelView`` snapshots, swapped in whole with one
assignment, which is what makes a new version's arrival atomic. The event loop only
reads them and never locks; the one thing it changes is a split's round-robin position.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import NotFound, Unavailable
from service.model import LoadedModel
from service.model_config import CONFIG_FILE, ModelConfig
from service.observability.context import note_model
from service.repository.versions import State, VersionStatus


class WeightedSplit:
    """Smooth weighted round robin (as nginx balances upstreams): deterministic, and
    any window of requests follows the weights as closely as whole requests can."""

    def __init__(self, weights: dict[int, float]) -> None:
        self.weights = {v: w for v, w in weights.items() if w > 0}
        self._current = dict.fromkeys(self.weights, 0.0)
        self._total = sum(self.weights.values())

    def pick(self) -> int:
        best, best_score = 0, float("-inf")
        for version, weight in self.weights.items():
            self._current[version] += weight
            if self._current[version] > best_score:
                best, best_score = version, self._current[version]
        self._current[best] -= self._total
        return best


@dataclass(frozen=True)
class ModelView:
    """One model as requests see it; replaced whole, never changed in place."""

    name: str
    versions: dict[int, VersionStatus]
    available: tuple[VersionStatus, ...]          # newest first
    config: ModelConfig
    config_error: str = ""
    split: WeightedSplit | None = None            # over available versions only

    def listing(self) -> list[VersionStatus]:
        return [self.versions[v] for v in sorted(self.versions, reverse=True)]


class Router:
    def __init__(self) -> None:
        self._views: dict[str, ModelView] = {}      # swapped whole
        self._splits: dict[str, WeightedSplit] = {}  # written by publishers only

    # --- publishing (poll and loader threads, under the publish lock) ------------------

    def publish(self, models: dict[str, tuple[dict[int, VersionStatus], ModelConfig, str]]
                ) -> None:
        """Swap in views of ``models``: name → (versions, config in force, config error)."""
        views = {name: self._build(name, versions, config, error)
                 for name, (versions, config, error) in models.items()}
        for name in set(self._splits) - set(views):
            del self._splits[name]
        self._views = views

    def _build(self, name: str, versions: dict[int, VersionStatus], config: ModelConfig,
               config_error: str) -> ModelView:
        available = tuple(s for v, s in sorted(versions.items(), reverse=True)
                          if s.state is State.AVAILABLE and s.model is not None)
        split = None
        weights = config.traffic_by_version()
        if weights:
            live = {v: w for v, w in weights.items() if any(s.version == v for s in available)}
            # A weighted version that is not available gives its share to the others.
            if sum(live.values()) > 0:
                # The same split object across scans while the weights stay the same:
                # a fresh one would restart the round-robin cycle at every scan.
                old = self._splits.get(name)
                same = old is not None and old.weights == {v: w for v, w in live.items()
                                                           if w > 0}
                split = old if same else WeightedSplit(live)
        if split is None:
            self._splits.pop(name, None)
        else:
            self._splits[name] = split
        return ModelView(name, versions, available, config, config_error, split)

    # --- queries (event loop; never block) ---------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._views)

    def any_available(self) -> bool:
        return any(v.available for v in self._views.values())

    def view(self, name: str) -> ModelView:
        view = self._views.get(name)
        if view is None:
            raise NotFound(self._unknown_model(name))
        return view

    def config(self, name: str) -> ModelConfig:
        view = self._views.get(name)
        return view.config if view is not None else ModelConfig()

    def status(self, name: str, version: int) -> VersionStatus:
        view = self.view(name)
        if version not in view.versions:
            known = ", ".join(str(v) for v in sorted(view.versions)) or "none"
            raise NotFound(f"Model '{name}' has no version {version}; versions: {known}.")
        return view.versions[version]

    def label_version(self, name: str, label: str) -> int:
        return _label_version(self.view(name), label)

    def resolve(self, name: str, version: int | None = None,
                label: str | None = None) -> LoadedModel:
        """The model that serves a request: the labelled or given version, else the
        traffic split's pick, else the newest available version."""
        view = self.view(name)
        if label is not None:
            version = _label_version(view, label)
        if version is not None:
            return _given_version(view, version, label)
        if view.split is not None:
            chosen = view.split.pick()
            for status in view.available:
                if status.version == chosen and status.model is not None:
                    note_model(name, chosen)
                    return status.model
        for status in view.available:
            model = status.model
            if model is not None:
                note_model(name, status.version)
                return model
        reasons = "; ".join(f"version {s.version}: {s.error or s.detail or s.state}"
                            for s in view.listing())
        raise Unavailable(f"Model '{name}' has no available version"
                          + (f" ({reasons})" if reasons else "") + ".")

    def _unknown_model(self, name: str) -> str:
        known = ", ".join(self.names()) or "none"
        shown = name if len(name) <= 64 else name[:64] + "…"
        return f"Model '{shown}' not found; models served here: {known}."


def _label_version(view: ModelView, label: str) -> int:
    if label not in view.config.labels:
        known = ", ".join(sorted(view.config.labels)) or "none"
        shown = label if len(label) <= 40 else label[:40] + "…"
        raise NotFound(f"Model '{view.name}' has no label '{shown}'; labels: {known} "
                       f"(set in {view.name}/{CONFIG_FILE}).")
    return view.config.labels[label]


def _given_version(view: ModelView, version: int, label: str | None) -> LoadedModel:
    name = view.name
    status = view.versions.get(version)
    if status is None:
        known = ", ".join(str(v) for v in sorted(view.versions)) or "none"
        raise NotFound(f"Model '{name}' has no version {version}"
                       + (f" (label '{label}')" if label else "")
                       + f"; versions: {known}.")
    if (status.state is State.END and not status.error) or status.state is State.UNLOADING:
        raise NotFound(f"Model '{name}' version {version} is not served: {status.why}.")
    model = status.model
    if model is None or status.state is not State.AVAILABLE:
        reason = status.error or status.detail
        raise Unavailable(f"Model '{name}' version {version} is not available "
                          f"(state {status.state})" + (f": {reason}" if reason else "")
                          + ".")
    note_model(name, version, label or "")
    return model
