import dataclasses

import pytest

from semcom.config import (
    Config,
    ConfigError,
    expand_sweep,
    load_config,
    load_raw,
    resolve,
    to_dict,
)
from semcom.fingerprint import run_id


def _err(overrides=(), data=None):
    with pytest.raises(ConfigError) as exc:
        if data is not None:
            resolve(data)
        else:
            load_config(None, overrides)
    return exc.value


def test_defaults_load_and_are_frozen():
    cfg = load_config()
    assert isinstance(cfg, Config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.run.seed = 3  # type: ignore[misc]


def test_set_overrides_nested_values_with_yaml_parsing():
    cfg = load_config(
        None,
        [
            "channel.snr_db=3",
            "edge.select.budget=16",
            "cloud.tasks=[vqa]",
            "channel.modulation=16qam",
        ],
    )
    assert cfg.channel.snr_db == 3.0 and isinstance(cfg.channel.snr_db, float)
    assert cfg.edge.select.budget == 16
    assert cfg.cloud.tasks == ("vqa",)
    assert cfg.channel.bits_per_symbol == 4


def test_unknown_key_names_full_path_allowed_keys_and_closest():
    e = _err(["edge.quant.bitz=4"])
    assert e.key == "edge.quant.bitz"
    assert "did you mean 'bits'" in str(e) and "allowed keys under 'edge.quant'" in str(e)
    e = _err(data={"chanel": {}})
    assert e.key == "chanel" and "did you mean 'channel'" in str(e)


@pytest.mark.parametrize(
    "override,key,value",
    [
        ("channel.code_rate=1.2", "channel.code_rate", "1.2"),
        ("channel.code_rate=0", "channel.code_rate", "0"),
        ("channel.loss_prob=-0.1", "channel.loss_prob", "-0.1"),
        ("edge.mdc.descriptions=0", "edge.mdc.descriptions", "0"),
        ("run.seed=-1", "run.seed", "-1"),
        ("data.num_images=0", "data.num_images", "0"),
    ],
)
def test_out_of_range_values_name_key_and_value(override, key, value):
    e = _err([override])
    assert e.key == key and value in str(e)


def test_wrong_types_name_key_and_value():
    e = _err(["channel.snr_db=high"])
    assert e.key == "channel.snr_db" and "'high'" in str(e)
    e = _err(["run.seed=1.5"])
    assert e.key == "run.seed"
    e = _err(["channel.modulation=8psk"])
    assert e.key == "channel.modulation" and "'qpsk'" in str(e)


def test_malformed_set_is_an_error():
    e = _err(["channel.snr_db"])
    assert "KEY=VALUE" in str(e)


def test_budget_above_token_count_is_an_error(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"vision_config": {"image_size": 96, "patch_size": 8}}')
    ok = load_config(None, [f"edge.model.path={model}", "edge.select.budget=144"])
    assert ok.edge.select.budget == 144
    e = _err([f"edge.model.path={model}", "edge.select.budget=145"])
    assert e.key == "edge.select.budget" and "144" in str(e) and "145" in str(e)


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_raw(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("channel: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_raw(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_raw(lst)


def test_hash_is_stable_and_ignores_unhashed_fields():
    a = load_config(None, ["channel.snr_db=3"])
    b = load_config(
        None,
        [
            "channel.snr_db=3.0",
            "run.out_dir=/elsewhere",
            "run.batch_size=3",
            "run.progress=false",
            "run.label=x",
        ],
    )
    c = load_config(None, ["channel.snr_db=4"])
    assert run_id(a) == run_id(b)
    assert run_id(a) != run_id(c)
    assert len(run_id(a)) == 12
    # Same config rebuilt from its own dict: same id (what resuming relies on).
    assert run_id(resolve(to_dict(a))) == run_id(a)


def test_hash_is_a_known_value_for_the_defaults():
    # Guards against accidental changes to hashing (which would orphan saved runs).
    import hashlib

    from semcom.config.core import canonical_json
    from semcom.fingerprint import fingerprint

    cfg = load_config()
    config = to_dict(cfg, hashed_only=True)
    assert "out_dir" not in canonical_json(config) and "batch_size" not in canonical_json(config)
    payload = canonical_json({"config": config, "assets": fingerprint(cfg)})
    assert run_id(cfg) == hashlib.sha256(payload.encode()).hexdigest()[:12]


def test_run_id_changes_when_the_model_weights_change(tmp_path):
    """Retraining a model in place must not reuse records made with the old weights."""
    import shutil

    from semcom.config.model import model_dir

    src = model_dir(load_config().cloud.model)
    dst = tmp_path / "blip"
    shutil.copytree(src, dst)
    sets = [f"cloud.model.path={dst}", f"edge.model.path={dst}", "edge.method=jpeg"]
    before = run_id(load_config(None, sets))
    assert run_id(load_config(None, sets)) == before  # stable
    weights = sorted(dst.rglob("*.safetensors"))[0]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    assert run_id(load_config(None, sets)) != before


def test_sweep_grid_and_zip_expansion():
    data = {
        "channel": {"link": "erasure"},
        "sweep": {
            "channel.snr_db": [0, 5, 10],
            "method": [
                {"edge.method": "jpeg", "edge.image.quality": 10},
                {"edge.method": "tokens", "edge.select.budget": 16},
            ],
        },
    }
    points = expand_sweep(data)
    assert len(points) == 6
    combos = {(p.config.channel.snr_db, p.config.edge.method) for p in points}
    assert combos == {(s, m) for s in (0.0, 5.0, 10.0) for m in ("jpeg", "tokens")}
    assert all(p.config.channel.link == "erasure" for p in points)
    jpeg = [p for p in points if p.config.edge.method == "jpeg"]
    assert all(p.config.edge.image.quality == 10 for p in jpeg)
    assert len({run_id(p.config) for p in points}) == 6
    assert all(p.config.sweep == {} for p in points)


def test_sweep_errors_name_the_axis():
    e = _err(data={"sweep": {"channel.snr": [1, 2]}})
    assert e.key == "sweep.channel.snr" and "channel.snr_db" in str(e)
    e = _err(data={"sweep": {"channel.snr_db": []}})
    assert e.key == "sweep.channel.snr_db"
    with pytest.raises(ConfigError) as exc:
        expand_sweep({"sweep": {"channel.code_rate": [0.5, 2.0]}})
    assert exc.value.key == "channel.code_rate" and "2.0" in str(exc.value)


def test_sweep_axis_can_be_set_from_the_command_line():
    cfg = load_config(None, ["sweep.channel.snr_db=[1,2]"])
    assert cfg.sweep == {"channel.snr_db": [1, 2]}


def test_plugin_fields_take_module_colon_name_but_still_reject_typos():
    from dataclasses import dataclass
    from typing import Literal

    from semcom.config.core import from_dict, option

    @dataclass(frozen=True)
    class Sec:
        part: Literal["a", "b"] = option("a", plugin="scorer")
        fixed: Literal["a", "b"] = option("a")

    assert from_dict(Sec, {"part": "my_pkg.mod:MyScorer"}).part == "my_pkg.mod:MyScorer"
    with pytest.raises(ConfigError, match="sec.part.*not allowed"):
        from_dict(Sec, {"part": "c"}, "sec")
    with pytest.raises(ConfigError, match="sec.fixed"):
        from_dict(Sec, {"fixed": "my_pkg.mod:MyScorer"}, "sec")


def test_run_id_covers_method_weights(tmp_path):
    """The run id covers the codec weights the run uses, and only those: changing the
    mean-scale file changes a mean-scale run's id, changing the factorized file does not."""
    import shutil

    from semcom.stages.codec.weights import codec_dir

    src = codec_dir("")
    shutil.copytree(src, tmp_path / "codecs")
    sets = ["edge.method=codec", "edge.image.codec=mean-scale", f"edge.image.weights={tmp_path}"]
    before = run_id(load_config(None, sets))
    other = tmp_path / "codecs" / "factorized.safetensors"
    other.write_bytes(other.read_bytes() + b"\0")
    assert run_id(load_config(None, sets)) == before
    used = tmp_path / "codecs" / "mean-scale.safetensors"
    data = bytearray(used.read_bytes())
    data[-1] ^= 1
    used.write_bytes(bytes(data))
    after = run_id(load_config(None, sets))
    assert after != before
    # the manifest entry counts too (here: gone; the directory digest stands in)
    (tmp_path / "codecs" / "manifest.json").write_text('{"codecs": []}')
    assert run_id(load_config(None, sets)) not in (before, after)
