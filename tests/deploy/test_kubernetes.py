"""Kubernetes manifests: schema-valid, the KServe InferenceService's structure, and
the wiring and security of the Deployment, Service, HPA and PDB."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.conftest import ROOT
from tests.deploy.files import (
    K8S,
    K8S_VERSIONS,
    env_of,
    final_stage,
    k8s,
    k8s_documents,
    pod_specs,
    settings_fields,
)


def _kubernetes_validate():
    try:
        import kubernetes_validate
    except ImportError:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate: "
                    "the dev extra); this check did not run")
    return kubernetes_validate


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_validate(version):
    kv = _kubernetes_validate()
    checked = 0
    for path, doc in k8s_documents():
        if doc["kind"] in ("Kustomization", "InferenceService"):
            continue  # no bundled schema: checked below
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{path.relative_to(ROOT)} {doc['kind']}: "
                        f"{'.'.join(map(str, exc.path))}: {exc.message}")
        checked += 1
    assert checked >= 4  # Deployment, Service, HPA, PDB


def test_kubernetes_validate_has_no_schema_for_kserve():
    """The InferenceService is a CRD: kubernetes-validate has no schema for it (if it
    ever does, validate with it instead of the structural check below)."""
    kv = _kubernetes_validate()
    with pytest.raises(kv.SchemaNotFoundError):
        kv.validate(k8s("InferenceService"), K8S_VERSIONS[-1], strict=True)


def _validate_against(kv, definition: str, value: object, version: str) -> None:
    """Validate a fragment against one Kubernetes definition (e.g. core.v1.PodSpec) of
    kubernetes-validate's bundled strict schemas."""
    import jsonschema
    import referencing
    from kubernetes_validate.utils import schema_contents

    folder = f"kubernetes-json-schema/v{version}.0-local-strict"
    defs = schema_contents(f"{folder}/_definitions.json", version)
    registry = referencing.Registry().with_resource(
        defs["$id"], referencing.Resource.from_contents(defs))
    schema = {"$schema": defs["$schema"], "$ref": f"{defs['$id']}#/$defs/{definition}"}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(value)


# KServe v1beta1 PredictorSpec (serving.kserve.io, pkg/apis/serving/v1beta1): a PodSpec
# and a ComponentExtensionSpec inline, plus one-of framework/model specs. The extension
# fields as KServe's API reference documents them:
KSERVE_EXTENSION_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "minReplicas": {"type": "integer", "minimum": 0},
        "maxReplicas": {"type": "integer", "minimum": 0},
        "scaleTarget": {"type": "integer", "minimum": 1},
        "scaleMetric": {"enum": ["cpu", "memory", "concurrency", "rps"]},
        "containerConcurrency": {"type": "integer", "minimum": 0},
        "timeout": {"type": "integer", "minimum": 1},
        "canaryTrafficPercent": {"type": "integer", "minimum": 0, "maximum": 100},
        "logger": {"type": "object"},
        "batcher": {"type": "object"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "deploymentStrategy": {"type": "object"},
    },
}
KSERVE_IMPLEMENTATIONS = {"sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx",
                          "huggingface", "pmml", "lightgbm", "paddle", "model", "storageUris",
                          "workerSpec"}


def test_kserve_inferenceservice_structure():
    """No schema ships for the CRD, so: the pod part of the predictor is validated against
    Kubernetes' own PodSpec schema (strict), the KServe extension fields against the
    documented types above, and the custom-predictor rules KServe applies are checked."""
    import jsonschema

    kv = _kubernetes_validate()
    isvc = k8s("InferenceService")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", isvc["metadata"]["name"])
    assert set(isvc) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(isvc["spec"]) <= {"predictor", "transformer", "explainer"}
    predictor = isvc["spec"]["predictor"]
    extension_keys = set(KSERVE_EXTENSION_SCHEMA["properties"])
    assert not set(predictor) & KSERVE_IMPLEMENTATIONS, "a custom predictor uses containers only"
    extension = {k: v for k, v in predictor.items() if k in extension_keys}
    pod = {k: v for k, v in predictor.items() if k not in extension_keys}
    jsonschema.validate(extension, KSERVE_EXTENSION_SCHEMA)
    assert extension.get("minReplicas", 1) <= extension["maxReplicas"]
    for version in K8S_VERSIONS:
        try:
            _validate_against(kv, "io.k8s.api.core.v1.PodSpec", pod, version)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"predictor pod fields ({version}): "
                        f"{'.'.join(map(str, exc.path))}: {exc.message}")
    # Custom predictor: the serving container is named kserve-container; its protocol is
    # the PROTOCOL variable (v1 or v2).
    names = [c["name"] for c in pod["containers"]]
    assert names == ["kserve-container"], names
    assert env_of(pod["containers"][0]).get("PROTOCOL") == "v2"
    annotations = isvc["metadata"]["annotations"]
    assert annotations.get("serving.kserve.io/deploymentMode") in (
        None, "Serverless", "RawDeployment", "Standard")
    assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "true"


def test_kserve_predictor_runs_the_deployments_container():
    """Probes, env, resources, security and drain are the same in both manifests."""
    deployment = k8s("Deployment")["spec"]["template"]["spec"]
    predictor = k8s("InferenceService")["spec"]["predictor"]
    dc, kc = deployment["containers"][0], predictor["containers"][0]
    dport = {p["name"]: p["containerPort"] for p in dc["ports"]}

    def probes(c: dict, ports: dict) -> dict:
        out = {}
        for name in ("startupProbe", "readinessProbe", "livenessProbe"):
            p = json.loads(json.dumps(c[name]))
            port = p["httpGet"]["port"]
            p["httpGet"]["port"] = ports.get(port, port)
            out[name] = p
        return out

    assert probes(dc, dport) == probes(kc, {})
    assert env_of(dc) == {k: v for k, v in env_of(kc).items() if k != "PROTOCOL"}
    for key in ("image", "resources", "securityContext", "volumeMounts"):
        assert dc[key] == kc[key], key
    for key in ("terminationGracePeriodSeconds", "securityContext", "volumes",
                "enableServiceLinks", "automountServiceAccountToken"):
        assert deployment[key] == predictor[key], key
    hpa = k8s("HorizontalPodAutoscaler")["spec"]
    assert predictor["minReplicas"] == hpa["minReplicas"]
    assert predictor["maxReplicas"] == hpa["maxReplicas"]
    assert predictor["scaleMetric"] == "cpu"
    assert predictor["scaleTarget"] == hpa["metrics"][0]["resource"]["target"][
        "averageUtilization"]


def test_kubernetes_wiring_and_security():
    deployment = k8s("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert k8s("Service")["spec"]["selector"].items() <= labels.items()
    assert k8s("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = k8s("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"

    image_uid = int([a for w, a in final_stage() if w == "USER"][-1].split(":")[0])
    fields = settings_fields()
    for kind, spec in pod_specs().items():
        ctx = spec["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == image_uid, kind
        container = spec["containers"][0]
        csc = container["securityContext"]
        assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
        assert csc["capabilities"]["drop"] == ["ALL"]
        # The read-only root needs a writable /tmp (autograph, uploads, metrics files).
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], kind
        # Service links inject <SERVICE>_PORT=tcp://... and friends into every pod: for a
        # Service named "modelserve" that is MODELSERVE_PORT, a setting.
        injected = set()
        for _, doc in k8s_documents():
            if doc["kind"] == "Service":
                name = doc["metadata"]["name"].upper().replace("-", "_")
                injected |= {f"{name}_SERVICE_HOST", f"{name}_SERVICE_PORT", f"{name}_PORT"}
        collisions = injected & set(fields)
        assert spec["enableServiceLinks"] is False or not collisions, (
            f"{kind}: service links would set {collisions}; set enableServiceLinks: false")


def test_kustomization_lists_the_plain_manifests():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present, (listed, present)
    image = k8s("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    name, _, tag = image.partition(":")
    assert kustomization["images"] == [{"name": name, "newTag": tag}]
