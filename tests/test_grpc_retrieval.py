"""Retrieval over the daemons: the gallery the cloud holds, query images kept per run,
Rank, and the edge sending again what a cloud no longer holds (cloud/gallery.py)."""

import json

import pytest
import torch
from tiny_models import save_tiny_blip

from cloud.gallery import Gallery, GalleryError, Queries
from semcom.commands import runner
from semcom.config import load_config

TOKEN = "retrieval-test-token-" + "g" * 20


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("random-blip")
    with torch.random.fork_rng():
        save_tiny_blip(d)
    return str(d)


def _cfg(out, blip_dir, *extra):
    return load_config(
        None,
        [
            f"run.out_dir={out}",
            "data.num_images=5",
            "run.batch_size=4",
            "run.progress=false",
            "edge.method=tokens",
            "edge.select.budget=16",
            "cloud.tasks=[retrieval]",
            f"edge.model.path={blip_dir}",
            f"cloud.model.path={blip_dir}",
            *extra,
        ],
    )


def test_gallery_file_errors_name_the_line(tmp_path):
    p = tmp_path / "g.jsonl"
    p.write_text(
        '{"image_id": "a", "captions": ["x", "y"]}\n\n{"image_id": "b", "captions": ["z"]}\n'
    )
    g = Gallery.read(p)
    assert (g.n_images, g.n_texts) == (2, 3)
    assert g.select(["b", "a"])[:2] == (["z", "x", "y"], [0, 1, 1])
    with pytest.raises(GalleryError, match=r"'c' are not in the cloud's gallery \(2 images"):
        g.select(["a", "c"])
    for text, needle in [
        ('{"image_id": "a", "captions": ["x"]}\nnot json\n', r"g.jsonl:2: not JSON"),
        ('{"image_id": "a"}\n', r"g.jsonl:1: 'captions' of 'a' must be strings"),
        ('{"captions": ["x"]}\n', r"g.jsonl:1: expected"),
        ('{"image_id": "a", "captions": ["x"]}\n{"image_id": "a", "captions": ["y"]}\n', "twice"),
        ("\n", "has no images"),
    ]:
        p.write_text(text)
        with pytest.raises(GalleryError, match=needle):
            Gallery.read(p)


def test_queries_keep_runs_within_the_byte_budget():
    e, t = torch.zeros(4), torch.zeros(2, 4)  # 16 + 32 bytes
    q = Queries(max_bytes=100)
    q.put("r1", "s1", "i1", e, t)
    q.put("r1", "s2", "i2", e, t)  # 96 bytes: both held
    assert q.get("r1", ["s2", "s1"])[1] == [] and len(q) == 2
    q.put("r2", "s1", "i1", e, t)  # over budget: the least recently used run goes
    assert q.get("r1", ["s1"]) == ([], ["s1"]) and len(q) == 1 and q.nbytes == 48
    q.put("r2", "s1", "i1", e, t)  # the same sample again replaces, not adds
    assert q.nbytes == 48
    q.drop("r2")
    assert len(q) == 0 and q.nbytes == 0


def test_rank_equals_in_process_and_images_lost_by_the_cloud_are_sent_again(tmp_path, blip_dir):
    """The cloud forgets the run's images before Rank (as after a restart): the edge sends
    them again (the cloud recomputes although it cached the replies) and the recalls
    still equal the in-process run's."""
    from cloud.server import ServerThread
    from edge.client import CloudClient, GrpcTransport
    from semcom.commands.cloud import build_gallery

    local = runner.run(_cfg(tmp_path / "local", blip_dir))
    assert local.ok, local.record.get("error")
    cfg = _cfg(tmp_path / "daemon", blip_dir)
    backend = runner.get_backend(cfg.cloud.model, "cpu")
    with ServerThread(cfg, token=TOKEN, backend=backend, gallery=build_gallery(cfg)) as srv:
        assert srv.service.status().gallery_texts == 5

        class Forgetful(GrpcTransport):
            def open(self, tasks, samples, setup=b""):
                session = super().open(tasks, samples, setup)
                finalize = session.finalize

                def forget_then_finalize():
                    srv.service.queries.drop(self.run_id)
                    return finalize()

                session.finalize = forget_then_finalize
                return session

        tr = Forgetful(cfg, CloudClient(srv.target, token=TOKEN, insecure=True))
        remote = runner.run(cfg, transport=tr)
        tr.close()
        computed = srv.service.counters["computed"]
    assert remote.ok, remote.record.get("error")
    assert computed == 10  # 5 images, each sent twice
    assert remote.record["metrics"] == local.record["metrics"]
    rows = [json.loads(x) for x in (remote.record_path.parent / "samples.jsonl").open()]
    assert all(set(r["outputs"]["retrieval"]) >= {"txt_r1", "img_r1"} for r in rows)


def test_rank_refusals_are_named(tmp_path, blip_dir):
    from cloud.server import ServerThread
    from edge.client import CloudClient, CloudError
    from semcom.commands.cloud import build_gallery

    cfg = _cfg(tmp_path, blip_dir)
    backend = runner.get_backend(cfg.cloud.model, "cpu")
    with ServerThread(cfg, token=TOKEN, backend=backend, gallery=build_gallery(cfg)) as srv:
        c = CloudClient(srv.target, token=TOKEN, insecure=True)
        kw = dict(run_id="r", sample_ids=["s"], image_ids=["i"], seed=0)
        with pytest.raises(CloudError, match="INVALID_ARGUMENT: rank caption: Rank ranks task"):
            c.rank(task="caption", **kw)
        with pytest.raises(CloudError, match="distinct sample ids"):
            c.rank(task="retrieval", **{**kw, "image_ids": []})
        assert list(c.rank(task="retrieval", **kw).missing) == ["s"]  # nothing held: say so
        c.close()
    # a cloud told to serve retrieval without a gallery fails to load, and says why
    srv = ServerThread(cfg, token=TOKEN, backend=backend, load=False)
    try:
        with pytest.raises(GalleryError, match="holds no gallery"):
            srv.call(srv.server.load())
        st = srv.service.status()
        assert st.state == st.FAILED and "holds no gallery" in st.error
    finally:
        srv.stop(0.1)
    gfile = tmp_path / "gallery.jsonl"
    gfile.write_text('{"image_id": "x", "captions": ["a red circle"]}\n')
    g = build_gallery(cfg, gfile)  # the file, not the data set, when one is given
    assert (g.n_images, g.texts, g.source) == (1, ["a red circle"], str(gfile))
    with pytest.raises(GalleryError, match="--gallery is for retrieval"):
        build_gallery(_cfg(tmp_path, blip_dir, "cloud.tasks=[caption]"), tmp_path / "g.jsonl")
