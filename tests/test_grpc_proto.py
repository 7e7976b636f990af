"""The contract: generated code is fresh, and the proto says what the daemons rely on."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GENERATED = ("semcom_pb2.py", "semcom_pb2.pyi", "semcom_pb2_grpc.py")


def test_generated_code_is_not_stale(tmp_path):
    """Regenerate as `make proto` does (from the repo root, -I .) and compare bytes."""
    pytest.importorskip("grpc_tools")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            "protos/semcom.proto",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    stale = [
        name
        for name in GENERATED
        if (tmp_path / "protos" / name).read_bytes() != (REPO / "protos" / name).read_bytes()
    ]
    assert not stale, f"protos/{stale} are stale: run `make proto` and commit the result"


def test_make_proto_target_generates_from_the_repo_root():
    text = (REPO / "Makefile").read_text()
    assert (
        "grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. protos/semcom.proto"
    ) in text


def test_contract_shape():
    from protos import semcom_pb2 as pb
    from protos import semcom_pb2_grpc as pb_grpc

    assert pb.DESCRIPTOR.package == "semcom.v1"
    svc = pb.DESCRIPTOR.services_by_name["EdgeCloud"]
    submit, status = svc.methods_by_name["Submit"], svc.methods_by_name["Status"]
    assert submit.client_streaming and not submit.server_streaming
    assert not status.client_streaming and not status.server_streaming
    # the generated import mirrors the package path (STYLE 5: no bare `import semcom_pb2`)
    assert "from protos import semcom_pb2" in Path(pb_grpc.__file__).read_text()
    header = pb.SubmitHeader.DESCRIPTOR.fields_by_name
    for name in (
        "protocol",
        "idempotency_key",
        "height",
        "width",
        "model_id",
        "codebook_id",
        "descriptions",
        "link",
        "settings",
        "seed",
    ):
        assert name in header
    d = pb.DescriptionHeader.DESCRIPTOR.fields_by_name
    assert {"index", "count", "erased", "size", "ledger", "link"} <= set(d)
