"""Property-based fuzzing of every protocol over real HTTP (issue #6, "prove it").

Hypothesis (derandomized: the same cases on every run) throws arbitrary JSON, wrong
types, extreme and non-finite numbers, deep nesting, unicode names, wrong V2 datatypes
and shapes, truncated binary tensors, lying Inference-Header-Content-Length values and
garbage gzip/deflate bodies at TF-Serving :predict/:classify/:regress, V2 /infer (JSON and
binary) and :predict_image. Schemathesis then fuzzes every operation of the service's own
OpenAPI schema. The pass criterion everywhere: never a 5xx, every error is JSON with a
string "error", and after each test the server process is alive and answers a valid
prediction. The case and 5xx counts are printed (and kept in the pytest cache as
``modelserve/fuzz-summary``) by the last test of the module.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import Counter
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from service.loader import read_manifest
from tests.conftest import MODELS, sample_row

WINE = read_manifest(MODELS / "wine-quality" / "2")
ROW = sample_row(WINE)
NAMES = list(WINE.feature_names)
HOUSING_ROW = sample_row(read_manifest(MODELS / "housing" / "2"))

# Every POST route a client can reach, across models whose inputs differ.
TFS = [f"/v1/models/{m}{v}:{verb}" for m in ("wine-quality", "housing", "digits")
       for v in ("", "/versions/2") for verb in ("predict", "classify", "regress")]
V2 = [f"/v2/models/{m}{v}/infer" for m in ("wine-quality", "housing", "digits")
      for v in ("", "/versions/2")]
IMAGE = ["/v1/models/digits:predict_image", "/v1/models/wine-quality:predict_image"]
FEEDBACK = ["/v1/models/wine-quality:feedback", "/v2/models/housing/feedback"]
ENDPOINTS = TFS + V2 + IMAGE + FEEDBACK

STATS: Counter[str] = Counter()


def _fuzz_settings(n: int):
    return settings(max_examples=n, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


def check(r, group: str = "fuzz") -> None:
    """No 5xx; an error is a JSON object with a string 'error'."""
    STATS[f"{group}_cases"] += 1
    if r.status_code >= 500:
        STATS[f"{group}_5xx"] += 1
    assert r.status_code < 500, (r.request.method, str(r.request.url)[:200], r.text[:500])
    if r.status_code >= 400:
        try:
            body = r.json()
        except ValueError:
            pytest.fail(f"non-JSON {r.status_code} error: {r.text[:300]!r}")
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], (
            r.status_code, r.text[:300])


def assert_still_serving(server, client) -> None:
    assert server.proc.poll() is None, server.output()
    r = client.post("/v1/models/wine-quality:predict", json={"instances": [ROW]})
    assert r.status_code == 200, r.text
    r = client.post("/v2/models/wine-quality/infer", json={"inputs": [
        {"name": "features", "shape": [1, 11], "datatype": "FP32", "data": ROW}]})
    assert r.status_code == 200, r.text


@pytest.fixture(autouse=True)
def _still_serving_after(server, client):
    yield
    assert_still_serving(server, client)


# --- strategies ----------------------------------------------------------------------------

EXTREME = st.sampled_from([1e308, -1e308, 5e-324, -5e-324, 0.0, -0.0, 2**63, -2**63 - 1,
                           2**64, 10**30, 3.4e38, 3.5e38, -3.5e38, 65504.0, 1e-45])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), EXTREME,
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=10), inner, max_size=6)),
    max_leaves=30)
NAME = st.one_of(st.sampled_from([*NAMES, "features", "image", "", " ", "\u00e9\U0001F600",
                                  "\x00", "a" * 300, "alcohol\u200b"]), st.text(max_size=20))


@st.composite
def tfs_bodies(draw) -> dict[str, Any]:
    """TF-Serving bodies that are nearly right: the right keys with wrong insides."""
    value = st.one_of(EXTREME, SCALARS, st.just(ROW[0]))
    row = st.one_of(
        st.lists(value, min_size=0, max_size=13),
        st.fixed_dictionaries({n: value for n in NAMES}),
        st.dictionaries(NAME, value, max_size=12),
        st.builds(lambda i, v: [*ROW[:i], v, *ROW[i + 1:]], st.integers(0, 10), value),
        JSON)
    key = draw(st.sampled_from(["instances", "inputs", "examples"]))
    body: dict[str, Any] = {key: draw(st.one_of(st.lists(row, max_size=4), row, JSON))}
    if draw(st.booleans()):
        body["context"] = draw(st.one_of(st.dictionaries(NAME, value, max_size=3), JSON))
    if draw(st.integers(0, 5)) == 0:
        body[draw(st.sampled_from(["instances", "inputs", "signature_name"]))] = draw(JSON)
    return body


DATATYPES = st.one_of(st.sampled_from(["FP16", "FP32", "FP64", "BF16", "INT8", "INT16", "INT32",
                                       "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "BOOL",
                                       "BYTES", "fp32", "FP99", ""]), JSON)
SHAPES = st.one_of(st.lists(st.integers(-2, 40), min_size=0, max_size=5),
                   st.lists(st.sampled_from([0, 1, 11, 28, 2**31 - 1, 2**31, 2**63]),
                            min_size=1, max_size=4),
                   st.sampled_from([[1, 11], [11], [1, 28, 28], [1, 28, 28, 1], [1, 1]]), JSON)


@st.composite
def v2_tensor(draw) -> dict[str, Any]:
    t: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        t["name"] = draw(NAME)
    if draw(st.integers(0, 9)):
        t["shape"] = draw(SHAPES)
    if draw(st.integers(0, 9)):
        t["datatype"] = draw(DATATYPES)
    which = draw(st.integers(0, 4))
    if which == 0:
        t["parameters"] = {"binary_data_size": draw(st.one_of(st.integers(-5, 2**65), JSON))}
    elif which == 1:
        t["parameters"] = draw(JSON)
    else:
        t["data"] = draw(st.one_of(st.lists(st.one_of(EXTREME, SCALARS), max_size=12),
                                   st.just(ROW), JSON))
    return t


@st.composite
def v2_bodies(draw) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": draw(st.one_of(st.lists(v2_tensor(), max_size=3), JSON))}
    if draw(st.booleans()):
        body["outputs"] = draw(st.one_of(
            st.lists(st.fixed_dictionaries(
                {"name": st.one_of(st.sampled_from(["probabilities", "class_id", "label",
                                                    "value"]), NAME)},
                optional={"parameters": st.one_of(
                    st.fixed_dictionaries({"classification": st.one_of(st.integers(), JSON)}),
                    st.fixed_dictionaries({"binary_data": JSON}), JSON)}), max_size=3),
            JSON))
    if draw(st.booleans()):
        body["id"] = draw(JSON)
    if draw(st.booleans()):
        body["parameters"] = draw(st.one_of(
            st.fixed_dictionaries({"binary_data_output": JSON}), JSON))
    return body


@st.composite
def feedback_bodies(draw):
    """Near-valid ground-truth feedback: the right keys holding anything."""
    item = st.fixed_dictionaries(
        {"request_id": st.one_of(st.text(st.characters(blacklist_categories=("Cs",)),
                                         max_size=140), JSON),
         "truth": st.one_of(st.sampled_from(["good", "bad", "7"]), st.integers(),
                            st.floats(allow_nan=False, allow_infinity=False), JSON)},
        optional={"instance": st.one_of(st.integers(), JSON)})
    return draw(st.one_of(item, st.fixed_dictionaries({"feedback": st.lists(item, max_size=5)}),
                          JSON))


# --- the tests -----------------------------------------------------------------------------


@_fuzz_settings(300)
@given(path=st.sampled_from(ENDPOINTS), payload=JSON)
def test_arbitrary_json_everywhere(client, path, payload):
    check(client.post(path, json=payload))


@_fuzz_settings(200)
@given(path=st.sampled_from(FEEDBACK), body=feedback_bodies())
def test_feedback_bodies(client, path, body):
    check(client.post(path, json=body))


@_fuzz_settings(300)
@given(path=st.sampled_from(TFS), body=tfs_bodies())
def test_tfserving_wrong_types_and_extreme_numbers(client, path, body):
    check(client.post(path, content=json.dumps(body, allow_nan=False)))


@_fuzz_settings(300)
@given(path=st.sampled_from(V2), body=v2_bodies())
def test_v2_wrong_datatypes_shapes_and_fields(client, path, body):
    check(client.post(path, content=json.dumps(body, allow_nan=False)))


LITERALS = ["NaN", "-NaN", "Infinity", "-Infinity", "1e308", "-1e308", "5e-324", "1e999",
            "-1e999", "1e-999", "-0", "0e0", "9" * 400, "-" + "9" * 5000, "1.7976931348623159e308",
            "nan", "inf", "0x10", "01", "1.", ".5", "+1", "\"1\"", "true", "null", "[]", "{}"]


@_fuzz_settings(200)
@given(path=st.sampled_from(TFS[:6] + V2), literal=st.sampled_from(LITERALS),
       at=st.integers(0, 10), form=st.integers(0, 3))
def test_non_finite_and_extreme_literals_raw(client, path, literal, at, form):
    """json.dumps cannot write these (NaN, 1e999, 5000-digit numbers, bare words), so
    the bodies are written by hand."""
    values = [repr(v) for v in ROW]
    values[at] = literal
    flat = "[" + ",".join(values) + "]"
    if "/v2/" in path:
        body = ('{"inputs":[{"name":"features","shape":[1,11],"datatype":"FP32","data":'
                + flat + "}]}")
    elif form == 0:
        body = '{"instances":[' + flat + "]}"
    elif form == 1:
        body = '{"instances":[{' + ",".join(
            f"{json.dumps(n)}:{v}" for n, v in zip(NAMES, values, strict=True)) + "}]}"
    elif form == 2:
        body = '{"examples":[{' + ",".join(
            f"{json.dumps(n)}:{v}" for n, v in zip(NAMES, values, strict=True)) + "}]}"
    else:
        body = '{"inputs":{' + ",".join(
            f"{json.dumps(n)}:[{v}]" for n, v in zip(NAMES, values, strict=True)) + "}}"
    check(client.post(path, content=body.encode()))


DEEP = [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b'{"instances":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"inputs":[{"name":"features","shape":[1,11],"datatype":"FP32","data":'
        + b"[" * 100_000 + b"]" * 100_000 + b"}]}",
        b'{"instances":[' + b"[1]," * 200_000 + b"[1]]}", b"{" * 100_000, b"\"" * 100_000,
        b"[" * 5_000 + b"1" + b"]" * 5_000]


@pytest.mark.parametrize("path", ["/v1/models/wine-quality:predict",
                                  "/v1/models/housing:regress",
                                  "/v1/models/wine-quality:classify",
                                  "/v2/models/wine-quality/infer", "/v2/models/digits/infer"])
def test_deep_nesting(client, path):
    for body in DEEP:
        check(client.post(path, content=body))


@_fuzz_settings(150)
@given(model=st.text(min_size=1, max_size=30), version=st.one_of(st.none(), st.text(max_size=12)),
       kind=st.integers(0, 3))
def test_unicode_model_names_and_versions(client, model, version, kind):
    model = quote(model, safe="")  # control characters cannot go into a URL unescaped
    v = "" if version is None else f"/versions/{quote(version, safe='')}"
    path = {0: f"/v1/models/{model}{v}:predict", 1: f"/v2/models/{model}{v}/infer",
            2: f"/v1/models/{model}{v}:predict_image", 3: f"/v2/models/{model}{v}"}[kind]
    body = {"instances": [ROW]} if kind != 1 else {"inputs": [
        {"name": "features", "shape": [1, 11], "datatype": "FP32", "data": ROW}]}
    r = client.get(path) if kind == 3 else client.post(path, json=body)
    check(r)


def _binary_request(model_input: str = "features", n: int = 11) -> tuple[bytes, bytes]:
    header = json.dumps({"inputs": [{"name": model_input, "shape": [1, n], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 4 * n}}],
                         "outputs": [{"name": "probabilities",
                                      "parameters": {"binary_data": True}}]}).encode()
    return header, np.asarray(ROW, np.float32).tobytes()


def test_binary_tensors_truncated_at_every_length(client):
    header, blob = _binary_request()
    full = header + blob
    url = "/v2/models/wine-quality/infer"
    r = client.post(url, content=full,
                    headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 200, r.text
    for cut in range(len(full)):
        # The header length stays what it was: the body ends early, inside the JSON or
        # inside the tensor bytes.
        check(client.post(url, content=full[:cut],
                          headers={"Inference-Header-Content-Length": str(len(header))}))
        # ... and the header length follows the cut (a consistent but short request).
        check(client.post(url, content=full[:cut],
                          headers={"Inference-Header-Content-Length": str(min(cut, len(header)))}))
    # Extra bytes after the tensor are refused too.
    check(client.post(url, content=full + b"\0" * 3,
                      headers={"Inference-Header-Content-Length": str(len(header))}))


@_fuzz_settings(200)
@given(value=st.one_of(st.integers(-10, 10**20).map(str),
                       st.sampled_from(["abc", "1.5", "0x10", "+5", "-0", "1e3", "\u00b2",
                                        "\u00b9\u00b2", "1 2", "9" * 300, "99999999999"])),
       offset=st.integers(-40, 40), tail=st.binary(max_size=64))
def test_inconsistent_header_content_length(client, value, offset, tail):
    header, blob = _binary_request()
    if value.lstrip("-").isdigit() and value.isascii() and len(value) < 6:
        value = str(len(header) + offset)
    check(client.post("/v2/models/wine-quality/infer", content=header + blob + tail,
                      headers={"Inference-Header-Content-Length": value.encode("latin-1")}))


@_fuzz_settings(150)
@given(encoding=st.sampled_from(["gzip", "deflate", "GZIP", "br", "x-gzip", "gzip, deflate",
                                 "identity", "compress", ""]),
       kind=st.integers(0, 3), data=st.binary(max_size=200), cut=st.integers(0, 200))
def test_content_encoding_garbage(client, encoding, kind, data, cut):
    valid = json.dumps({"inputs": [{"name": "features", "shape": [1, 11], "datatype": "FP32",
                                    "data": ROW}]}).encode()
    enc = encoding.lower()
    packed = gzip.compress(valid) if enc == "gzip" else zlib.compress(valid)
    body = {0: data, 1: packed[:cut], 2: packed + data, 3: gzip.compress(data)}[kind]
    for path in ("/v2/models/wine-quality/infer", "/v1/models/wine-quality:predict"):
        check(client.post(path, content=body, headers={"Content-Encoding": encoding}))


def test_compressed_bomb_is_refused(client):
    bomb = gzip.compress(b" " * 50_000_000)  # ~50 KB on the wire
    r = client.post("/v2/models/wine-quality/infer", content=bomb,
                    headers={"Content-Encoding": "gzip"})
    check(r)
    assert r.status_code in (400, 413) and "limit" in r.json()["error"]


@_fuzz_settings(150)
@given(data=st.binary(max_size=300),
       ctype=st.sampled_from(["image/png", "image/jpeg", "application/octet-stream",
                              "multipart/form-data", "multipart/form-data; boundary=x",
                              "text/plain", "", "image/gif"]),
       path=st.sampled_from(IMAGE))
def test_image_endpoint_garbage(client, data, ctype, path):
    check(client.post(path, content=data, headers={"content-type": ctype}))


# Regression tests for the 5xx the fuzzing found (each was a 500, or a plain-text 500).

@pytest.mark.parametrize("method, path, body, headers", [
    # A lone surrogate in an echoed feature name: orjson could not write the error.
    ("POST", "/v1/models/wine-quality:predict", b'{"instances":[{"\\ud800": 1}]}', {}),
    # A 5000-digit number: Python's int-conversion limit raised a bare ValueError.
    ("POST", "/v1/models/wine-quality:predict", b'{"instances":[[' + b"9" * 5000 + b"]]}", {}),
    ("POST", "/v2/models/wine-quality/infer", b'{"id":' + b"9" * 5000 + b"}", {}),
    # An element count past 64 bits in the error's details: orjson could not write it.
    ("POST", "/v2/models/wine-quality/infer", json.dumps({"inputs": [{
        "name": "features", "shape": [2**31 - 1] * 3, "datatype": "FP32", "data": [1]}]}).encode(),
     {}),
    # An unhashable datatype.
    ("POST", "/v2/models/wine-quality/infer", json.dumps({"inputs": [{
        "name": "features", "shape": [1, 11], "datatype": ["FP32"], "data": ROW}]}).encode(), {}),
    # Unicode digits (superscript two, Arabic-Indic one) pass str.isdigit(), not int().
    ("GET", "/v1/models/wine-quality/versions/\u00b2", None, {}),
    ("GET", "/v2/models/wine-quality/versions/\u00b2/ready", None, {}),
    ("POST", "/v1/models/wine-quality/versions/\u0661:predict", b"{}", {}),
    ("POST", "/v2/models/wine-quality/versions/\u0661/infer", b"{}", {}),
    ("POST", "/v2/models/wine-quality/infer", b"{}",
     {"Inference-Header-Content-Length": "\u00b2".encode("latin-1")}),
    ("POST", "/v2/models/wine-quality/infer", b"{}",
     {"Inference-Header-Content-Length": "9" * 5000}),
])
def test_fuzz_findings_are_4xx(client, method, path, body, headers):
    r = client.request(method, path, content=body, headers=headers)
    check(r, "regression")
    assert 400 <= r.status_code < 500, r.text


# --- schemathesis: every operation of the service's own OpenAPI schema ----------------------


def test_openapi_schema_fuzzing(server, client):
    import requests
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    session = requests.Session()
    seen: set[str] = set()
    for op in operations:
        for mode, n in ((GenerationMode.POSITIVE, 12), (GenerationMode.NEGATIVE, 12)):
            @_fuzz_settings(n)
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case):
                try:
                    response = case.call(base_url=server.url, session=session, timeout=30)
                except (ValueError, requests.exceptions.InvalidHeader,
                        requests.exceptions.InvalidURL):
                    return  # a request the client library itself cannot send
                STATS["schemathesis_cases"] += 1
                if response.status_code >= 500:
                    STATS["schemathesis_5xx"] += 1
                assert response.status_code < 500, (case.method, case.formatted_path,
                                                     response.text[:300])
                if response.status_code >= 400:
                    body = json.loads(response.content)
                    assert isinstance(body, dict) and isinstance(body.get("error"), str), (
                        case.method, case.formatted_path, response.status_code, body)
                seen.add(f"{case.method.upper()} {case.path}")

            try:
                run()
            except Unsatisfiable:
                # Nothing to make invalid (no parameters, no body): positive cases only.
                assert mode is GenerationMode.NEGATIVE, op.path
    assert len(seen) == len(operations), sorted(seen)
    STATS["schemathesis_operations"] = len(operations)


def test_zz_fuzz_summary(request, capsys):
    cases = sum(v for k, v in STATS.items() if k.endswith("_cases"))
    errors = sum(v for k, v in STATS.items() if k.endswith("_5xx"))
    summary = {"cases": cases, "5xx": errors, **dict(sorted(STATS.items()))}
    if getattr(request.config, "cache", None) is not None:  # not with -p no:cacheprovider
        request.config.cache.set("modelserve/fuzz-summary", summary)
    with capsys.disabled():
        print(f"\nfuzz summary: {cases} cases, {errors} 5xx ({json.dumps(summary)})")
    assert errors == 0
