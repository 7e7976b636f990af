"""Same answers, for real: the tiny-world data, the real link, the tiny models and the real
task runners and metrics, in process (`semcom run`) and through the daemons (the cloud
daemon in process on a loopback port, the edge's gRPC transport) must give identical
per-sample rows and records. Erasures are forced (erasure link) so that erasure markers
and concealment cross the wire; the token method uses two descriptions.
"""

import json
from pathlib import Path

import pytest

from semcom import runner
from semcom.config import load_config

TOKEN = "real-test-token-" + "r" * 20
TIMING = ("edge_s", "cloud_s")

CASES = {
    "tokens-caption": ["edge.method=tokens", "edge.select.budget=24", "edge.quant.type=scalar",
                       "edge.quant.bits=6", "edge.mdc.descriptions=2", "cloud.tasks=[caption]"],
    "jpeg-caption": ["edge.method=jpeg", "edge.image.quality=30", "cloud.tasks=[caption]"],
    "tokens-vqa": ["edge.model.name=llava", "cloud.model.name=llava", "edge.method=tokens",
                   "edge.select.budget=16", "edge.mdc.descriptions=2", "cloud.tasks=[vqa]"],
}


def _cfg(out, case):
    return load_config(None, [f"run.out_dir={out}", "data.num_images=6", "run.batch_size=4",
                              "run.progress=false", "channel.link=erasure",
                              "channel.loss_prob=0.3", *CASES[case]])


def _need_real_pieces(cfg):
    from semcom.errors import SemcomError

    try:
        from channel import build_link  # noqa: F401
        runner.get_backend(cfg.cloud.model, "cpu")
        runner.get_backend(cfg.edge.model, "cpu")
        import cloud.tasks  # noqa: F401
        import semcom.data  # noqa: F401
        import semcom.metrics  # noqa: F401
    except (ImportError, SemcomError) as exc:
        pytest.skip(f"real pieces not available yet: {exc}")


def _rows(path):
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    for r in rows:
        for k in TIMING:
            r.pop(k, None)
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_daemons_reproduce_semcom_run_exactly(tmp_path, case):
    from cloud.server import ServerThread
    from edge.client import CloudClient, GrpcTransport

    local_cfg = _cfg(tmp_path / "local", case)
    _need_real_pieces(local_cfg)
    local = runner.run(local_cfg)
    assert local.ok, local.record.get("error")
    cfg = _cfg(tmp_path / "daemon", case)
    backend = runner.get_backend(cfg.cloud.model, "cpu")
    with ServerThread(cfg, token=TOKEN, backend=backend) as srv:
        tr = GrpcTransport(cfg, CloudClient(srv.target, token=TOKEN, insecure=True),
                           journal=tmp_path / "journal.jsonl")
        remote = runner.run(cfg, transport=tr)
        tr.close()
        computed = srv.service.counters["computed"]
    assert remote.ok, remote.record.get("error")
    a = _rows(local.record_path.parent / "samples.jsonl")
    b = _rows(remote.record_path.parent / "samples.jsonl")
    assert len(a) == len(b) == computed > 0
    for x, y in zip(a, b):
        assert x == y, (x["sample_id"], x["outputs"], y["outputs"])
    for key in ("num_samples", "metrics", "rate", "tokens", "link"):
        assert local.record[key] == remote.record[key], key
    assert remote.record["link"]["erasures"] > 0
