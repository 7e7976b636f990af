"""Same answers, for real: the tiny-world data, the real link, real tiny models and the real
task runners and metrics, in process (`semcom run`) and through the daemons (the cloud
daemon in process on a loopback port, the edge's gRPC transport) must give identical
per-sample rows and records. Erasures are forced (erasure link) so that erasure markers
and concealment cross the wire; the token method uses two descriptions.

Models: ``shipped`` = the trained tiny models in ``semcom/models/tiny/{blip,llava}``
(skipped while they are absent); ``random`` = small random BLIP / LLaVA built in a
temporary directory and named by ``model.path`` (always available). The default suite
runs the token-method caption case with the shipped BLIP (a random one if it is
absent); every case with both sources is `slow`.
"""

import json
from pathlib import Path

import pytest
from tiny_models import save_tiny_blip, save_tiny_llava

from semcom.commands import runner
from semcom.config import load_config

TOKEN = "real-test-token-" + "r" * 20
TIMING = ("edge_s", "cloud_s")

CASES = {
    "tokens-caption": [
        "edge.method=tokens",
        "edge.select.budget=24",
        "edge.quant.type=scalar",
        "edge.quant.bits=6",
        "edge.mdc.descriptions=2",
        "cloud.tasks=[caption]",
    ],
    "tokens-retrieval": [
        "edge.method=tokens",
        "edge.select.budget=24",
        "edge.mdc.descriptions=2",
        "cloud.tasks=[caption, retrieval]",
    ],
    "jpeg-caption": ["edge.method=jpeg", "edge.image.quality=30", "cloud.tasks=[caption]"],
    "tokens-vqa": [
        "edge.model.name=llava",
        "cloud.model.name=llava",
        "edge.method=tokens",
        "edge.select.budget=16",
        "edge.mdc.descriptions=2",
        "cloud.tasks=[vqa]",
    ],
}
FAMILY = {
    "tokens-caption": "blip",
    "tokens-retrieval": "blip",
    "jpeg-caption": "blip",
    "tokens-vqa": "llava",
}


@pytest.fixture(scope="module")
def random_models(tmp_path_factory):
    """family -> a directory with a small random model of that family (built once)."""
    built = {}

    def get(family):
        if family not in built:
            torch = pytest.importorskip("torch")
            d = tmp_path_factory.mktemp(f"random-{family}")
            with torch.random.fork_rng():
                save = save_tiny_blip if family == "blip" else save_tiny_llava
                save(d)  # seeds 1 (BLIP) and 2 (LLaVA)
            built[family] = str(d)
        return built[family]

    return get


def _model_sets(source, family, random_models):
    """``--set`` overrides naming the models of ``source`` (shipped, random, or auto:
    shipped when present, else random)."""
    if source in ("shipped", "auto"):
        from semcom.config.model import ModelRef, model_dir
        from semcom.errors import SemcomError

        try:
            runner.get_backend(ModelRef(family), "cpu")
            return []
        except (ImportError, SemcomError) as exc:
            if source == "shipped":
                pytest.skip(
                    f"the trained tiny {family} is not in {model_dir(ModelRef(family))} yet: {exc}"
                )
    path = random_models(family)
    return [f"edge.model.path={path}", f"cloud.model.path={path}"]


def _cfg(out, case, models):
    return load_config(
        None,
        [
            f"run.out_dir={out}",
            "data.num_images=6",
            "run.batch_size=4",
            "run.progress=false",
            "channel.link=erasure",
            "channel.loss_prob=0.3",
            *CASES[case],
            *models,
        ],
    )


def _need_real_pieces(cfg):
    from semcom.errors import SemcomError

    try:
        from channel import build_link  # noqa: F401

        runner.get_backend(cfg.cloud.model, "cpu")
        runner.get_backend(cfg.edge.model, "cpu")
        import semcom.data
        import semcom.metrics
        import semcom.tasks  # noqa: F401
    except (ImportError, SemcomError) as exc:
        pytest.skip(f"real pieces not available yet: {exc}")


def _rows(path):
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    for r in rows:
        for k in TIMING:
            r.pop(k, None)
    return rows


def _same_answers(tmp_path, case, models):
    from cloud.server import ServerThread
    from edge.client import CloudClient, GrpcTransport
    from semcom.commands.cloud import build_gallery

    local_cfg = _cfg(tmp_path / "local", case, models)
    _need_real_pieces(local_cfg)
    local = runner.run(local_cfg)
    assert local.ok, local.record.get("error")
    cfg = _cfg(tmp_path / "daemon", case, models)
    backend = runner.get_backend(cfg.cloud.model, "cpu")
    gallery = build_gallery(cfg)  # retrieval: the captions of the same data set
    with ServerThread(cfg, token=TOKEN, backend=backend, gallery=gallery) as srv:
        tr = GrpcTransport(
            cfg,
            CloudClient(srv.target, token=TOKEN, insecure=True),
            journal=tmp_path / "journal.jsonl",
        )
        remote = runner.run(cfg, transport=tr)
        tr.close()
        computed = srv.service.counters["computed"]
        held = len(srv.service.queries)
    assert remote.ok, remote.record.get("error")
    a = _rows(local.record_path.parent / "samples.jsonl")
    b = _rows(remote.record_path.parent / "samples.jsonl")
    assert len(a) == len(b) == computed > 0
    for x, y in zip(a, b):
        assert x == y, (x["sample_id"], x["outputs"], y["outputs"])
    for key in ("num_samples", "metrics", "rate", "tokens", "link"):
        assert local.record[key] == remote.record[key], key
    assert remote.record["link"]["erasures"] > 0
    assert local.record["metrics"]
    if not models:  # the trained models: not vacuous, the answers differ between samples
        # (a random model says the same thing to every input, so only equality is checked)
        outs = [json.dumps(r["outputs"], sort_keys=True) for r in b]
        assert len(set(outs)) > 1, outs
    return local.record, remote.record, held


def test_daemons_reproduce_semcom_run_tokens_caption(tmp_path, random_models):
    _same_answers(tmp_path, "tokens-caption", _model_sets("auto", "blip", random_models))


def test_daemons_reproduce_semcom_run_retrieval(tmp_path, random_models):
    """Retrieval over the daemons: the cloud's gallery, R@K equal to in process."""
    local, remote, held = _same_answers(
        tmp_path, "tokens-retrieval", _model_sets("auto", "blip", random_models)
    )
    assert held == remote["num_samples"] == 6  # every query image was kept for Rank
    r = remote["metrics"]["retrieval"]
    assert set(r) >= {"txt_r1", "img_r1", "r_mean"} and r["r_mean"]["value"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("source", ["shipped", "random"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_daemons_reproduce_semcom_run_exactly(tmp_path, case, source, random_models):
    _same_answers(tmp_path, case, _model_sets(source, FAMILY[case], random_models))
