"""The committed KServe V2 gRPC modules (service/protocols/grpc/proto/): they are what
`make proto` generates from the .proto, and they speak tritonclient.grpc's wire format.

tritonclient.grpc and our modules both define package `inference` in protobuf's default
descriptor pool, and one process cannot hold both (protobuf raises "duplicate symbol"). This
test process imports only tritonclient's, as a client test does; ours are imported in a
subprocess, as in the server.
"""

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2, json_format
from tritonclient.grpc import service_pb2 as triton

ROOT = Path(__file__).resolve().parents[1]
PROTO = Path("service/protocols/grpc/proto/grpc_predict_v2.proto")
GENERATED = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")
RPCS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
        "ModelInfer", "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload")

# Parses each message with our generated class (importing the _pb2_grpc module proves its
# package-relative import and the gencode/runtime version checks), answers its fields as
# JSON and its re-serialised bytes. -W error: any protobuf or grpc warning fails.
OURS = """
import base64, json, sys
from google.protobuf import json_format
from service.protocols.grpc.proto import grpc_predict_v2_pb2 as pb, grpc_predict_v2_pb2_grpc
assert grpc_predict_v2_pb2_grpc.GRPCInferenceServiceServicer
out = []
for name, data in json.load(sys.stdin):
    message = getattr(pb, name).FromString(base64.b64decode(data))
    out.append([json_format.MessageToDict(message, preserving_proto_field_name=True),
                base64.b64encode(message.SerializeToString(deterministic=True)).decode()])
json.dump(out, sys.stdout)
"""


def _protoc(tmp_path: Path, *outputs: str) -> None:
    """Runs protoc as `make proto` does, from a copy of the tree holding only the .proto."""
    (tmp_path / PROTO).parent.mkdir(parents=True)
    shutil.copy(ROOT / PROTO, tmp_path / PROTO)
    done = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", ".", *outputs,
                           str(PROTO)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def _our_descriptor(tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    _protoc(tmp_path, "--descriptor_set_out=set.pb")
    files = descriptor_pb2.FileDescriptorSet.FromString((tmp_path / "set.pb").read_bytes())
    [ours] = files.file
    return ours


def _messages(file: descriptor_pb2.FileDescriptorProto) -> dict[str, list[tuple]]:
    """Full message name (nested ones and map entries too) -> its fields' wire identity."""
    found: dict[str, list[tuple]] = {}

    def walk(prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        name = f"{prefix}.{message.name}"
        found[name] = sorted(
            (f.number, f.name, f.type, f.label, f.type_name,
             message.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else None)
            for f in message.field)
        for nested in message.nested_type:
            walk(name, nested)

    for message in file.message_type:
        walk(f".{file.package}", message)
    return found


def test_committed_modules_are_what_the_proto_generates(tmp_path):
    _protoc(tmp_path, "--python_out=.", "--pyi_out=.", "--grpc_python_out=.")
    for name in GENERATED:
        generated = (tmp_path / PROTO.parent / name).read_text()
        committed = (ROOT / PROTO.parent / name).read_text()
        assert committed == generated, f"{PROTO.parent / name} is stale: run `make proto`"
    grpc_module = (ROOT / PROTO.parent / "grpc_predict_v2_pb2_grpc.py").read_text()
    assert "from service.protocols.grpc.proto import grpc_predict_v2_pb2" in grpc_module


def test_service_and_messages_match_tritonclient(tmp_path):
    ours = _our_descriptor(tmp_path)
    theirs = descriptor_pb2.FileDescriptorProto()
    triton.DESCRIPTOR.CopyToProto(theirs)
    assert ours.package == theirs.package == "inference"
    [service] = ours.service
    [triton_service] = [s for s in theirs.service if s.name == service.name]
    assert service.name == "GRPCInferenceService"
    methods = {m.name: m for m in service.method}
    assert tuple(methods) == RPCS
    triton_methods = {m.name: m for m in triton_service.method}
    for name, method in methods.items():
        other = triton_methods[name]
        assert (method.input_type, method.output_type) == (other.input_type, other.output_type)
        assert not (method.client_streaming or method.server_streaming)
        assert not (other.client_streaming or other.server_streaming)
    # Every message we declare exists in Triton's file with exactly the same fields.
    triton_messages = _messages(theirs)
    for name, fields in _messages(ours).items():
        assert name in triton_messages, name
        assert fields == triton_messages[name], name


def _infer_request() -> triton.ModelInferRequest:
    request = triton.ModelInferRequest(model_name="iris", model_version="2", id="req-1")
    request.parameters["binary_data_output"].bool_param = True
    request.parameters["priority"].int64_param = -3
    request.parameters["tag"].string_param = "é"
    request.parameters["threshold"].double_param = 0.25
    request.parameters["sequence_id"].uint64_param = 2**64 - 1
    raw = request.inputs.add(name="raw", datatype="FP32", shape=[2, 2])
    raw.parameters["binary_data_size"].int64_param = 16
    request.raw_input_contents.append(bytes(range(16)))
    typed = request.inputs.add(name="typed", datatype="INT64", shape=[3])
    typed.contents.int64_contents.extend([-(2**63), 0, 2**63 - 1])
    for name, field, values in [("b", "bool_contents", [True, False]),
                                ("s", "bytes_contents", [b"\x00ab", b""]),
                                ("f", "fp32_contents", [1.5, -0.0]),
                                ("d", "fp64_contents", [1e300, 2.5]),
                                ("u", "uint64_contents", [2**64 - 1, 1]),
                                ("i", "int_contents", [-(2**31), 7]),
                                ("ui", "uint_contents", [2**32 - 1, 0])]:
        tensor = request.inputs.add(name=name, datatype="X", shape=[len(values)])
        getattr(tensor.contents, field).extend(values)
    output = request.outputs.add(name="probabilities")
    output.parameters["classification"].int64_param = 2
    return request


def _infer_response() -> triton.ModelInferResponse:
    response = triton.ModelInferResponse(model_name="iris", model_version="2", id="req-1")
    response.parameters["sequence_end"].bool_param = True
    out = response.outputs.add(name="probabilities", datatype="FP32", shape=[1, 3])
    out.parameters["binary_data_size"].int64_param = 12
    response.raw_output_contents.append(bytes(12))
    labels = response.outputs.add(name="labels", datatype="BYTES", shape=[1])
    labels.contents.bytes_contents.append(b"setosa")
    return response


def _repository_messages() -> list:
    load = triton.RepositoryModelLoadRequest(repository_name="", model_name="iris")
    load.parameters["config"].string_param = "{}"
    load.parameters["file:1/model.bin"].bytes_param = b"\x00\x01"
    index = triton.RepositoryIndexResponse()
    index.models.add(name="iris", version="2", state="UNAVAILABLE", reason="unloaded")
    return [load, index, triton.RepositoryIndexRequest(ready=True),
            triton.RepositoryModelUnloadRequest(model_name="iris")]


def test_tritonclient_messages_parse_and_serialise_as_ours():
    sent = [_infer_request(), _infer_response(), *_repository_messages()]
    payload = [[m.DESCRIPTOR.name, base64.b64encode(m.SerializeToString()).decode()]
               for m in sent]
    done = subprocess.run([sys.executable, "-W", "error", "-c", OURS], cwd=ROOT,
                          input=json.dumps(payload), capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    assert len(answers) == len(sent)
    for message, (fields, data) in zip(sent, answers, strict=True):
        # Every field landed in a field of ours with the same name and value...
        assert fields == json_format.MessageToDict(message, preserving_proto_field_name=True)
        # ...and what ours sends back is the same message to tritonclient.
        assert type(message).FromString(base64.b64decode(data)) == message
