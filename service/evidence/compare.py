"""Two versions of a model side by side, from the evidence the service holds: how often
they agree on the same live requests (shadow traffic), how good each is on fed-back
truth, how long each takes on the same requests, and how far each one's inputs and
answers have drifted from its training data; then the sentences a person acts on."""

from __future__ import annotations

from typing import Any

from service.evidence.drift import DriftScores
from service.evidence.shadow import PairStats
from service.manifest import Task
from service.scores import PRIMARY

MIN_JOINED = 30  # fed-back predictions per version before their scores are compared


def report(name: str, task: Task, baseline: int, candidate: int,
           pairs: dict[tuple[int, int], PairStats], live: dict[str, dict[str, Any]],
           drift: dict[int, DriftScores]) -> dict[str, Any]:
    b, c = str(baseline), str(candidate)
    out: dict[str, Any] = {"model": name, "baseline": baseline, "candidate": candidate}
    shadow = {f"{x} vs {y}": s.as_dict(task) for (x, y), s in pairs.items()}
    out["shadow"] = shadow
    out["feedback"] = {v: live.get(v, {"joined": 0}) for v in (b, c)}
    out["drift"] = {v: _drift(drift.get(int(v))) for v in (b, c)}
    out["summary"] = _summary(task, b, c, pairs, out["feedback"], out["drift"])
    return out


def _drift(scores: DriftScores | None) -> dict[str, Any]:
    if scores is None:
        return {"rows": 0}
    worst = max(scores.features.items(), key=lambda kv: kv[1][0], default=None)
    out: dict[str, Any] = {"rows": scores.rows, "prediction_psi": round(scores.prediction_psi, 4)}
    if worst is not None:
        out["max_feature_psi"] = round(worst[1][0], 4)
        out["max_feature"] = worst[0]
    return out


def _summary(task: Task, b: str, c: str, pairs: dict[tuple[int, int], PairStats],
             feedback: dict[str, dict[str, Any]], drift: dict[str, dict[str, Any]]
             ) -> list[str]:
    lines = []
    stats = pairs.get((int(b), int(c))) or pairs.get((int(c), int(b)))
    if stats is None or not stats.rows:
        lines.append(f"No shadow traffic between v{b} and v{c} yet: set \"shadow\" in the "
                     "model's config.json to compare them on the same requests.")
    else:
        what = (f"agreed on {stats.agree / stats.rows:.1%} of {stats.rows:,} rows"
                if task is Task.CLASSIFICATION else
                f"differed by {stats.abs_diff / stats.rows:.4g} on average "
                f"({stats.rel_diff / stats.rows:.1%}) over {stats.rows:,} rows")
        lines.append(f"On {stats.requests:,} shadowed requests the two versions {what}; "
                     f"model time {1000 * stats.primary_s / stats.requests:.3g} ms (served) "
                     f"vs {1000 * stats.shadow_s / stats.requests:.3g} ms (shadow)"
                     + (f"; the shadow failed {stats.errors:,} times" if stats.errors else "")
                     + ".")
    key, higher = PRIMARY[task]
    have = {v: feedback[v] for v in (b, c) if feedback[v].get("joined", 0) >= MIN_JOINED
            and key in feedback[v]}
    if len(have) == 2:
        vb, vc = have[b][key], have[c][key]
        better = c if (vc > vb if higher else vc < vb) else b
        lines.append(f"On fed-back truth, {key}: v{b} {vb:.4f} ({have[b]['joined']:,} "
                     f"predictions), v{c} {vc:.4f} ({have[c]['joined']:,}): v{better} is "
                     "better." if vb != vc else f"On fed-back truth, {key} is equal: {vb:.4f}.")
    else:
        lines.append(f"Not enough fed-back truth to compare {key} (at least {MIN_JOINED} "
                     "predictions of each version): " + ", ".join(
                         f"v{v} has {feedback[v].get('joined', 0)}" for v in (b, c)) + ".")
    for v in (b, c):
        d = drift[v]
        if d.get("rows") and d.get("max_feature_psi", 0) > 0.25:
            lines.append(f"v{v}'s inputs have drifted: {d['max_feature']} PSI "
                         f"{d['max_feature_psi']} over its last {d['rows']:,} rows.")
    return lines
