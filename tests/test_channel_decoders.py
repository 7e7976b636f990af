"""The LDPC decoder backends: the fast kernel against its numpy twin and against Sionna's
sum-product; the fixed-point kernel (SIMD, portable and numpy twins) against the fast one;
the Sionna backend against Sionna's own LDPC5GDecoder."""

import numpy as np
import pytest

from channel.channels import transmit
from channel.decoders import LLR_CLIP, FastDecoder, FixedDecoder, SionnaDecoder, load_kernel
from channel.ldpc import LdpcCode
from channel.modulation import demodulate, modulate


def _llrs(code, n, qm, esno_db, batch, seed):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 2, (batch, code.k_prime), dtype=np.uint8)
    idx = code.rm_indices(n, 0, qm)
    x = modulate(code.encode(u)[:, idx], qm)
    z, nv = transmit(x, 10 ** (-esno_db / 10), "awgn", rng)
    L = np.zeros((batch, code.n), np.float32)
    L[:, code.k_prime : code.k] = LLR_CLIP
    L[:, idx] += np.clip(demodulate(z, nv, qm), -LLR_CLIP, LLR_CLIP)
    return u, L, idx, code.active_rows(code.covered_cols(idx))


@pytest.mark.skipif(load_kernel() is None, reason="no C compiler")
@pytest.mark.parametrize("early_stop", [True, False])
def test_c_kernel_equals_numpy_implementation(early_stop):
    code = LdpcCode.for_block(256, 0.5)
    u, L, _, rows = _llrs(code, 512, 2, 1.0, 40, 0)
    a = FastDecoder(12, early_stop=early_stop, backend="c")(code, L, rows)
    b = FastDecoder(12, early_stop=early_stop, backend="numpy")(code, L, rows)
    assert np.array_equal(a.bits, b.bits)
    assert np.array_equal(a.iterations, b.iterations) and np.array_equal(a.ok, b.ok)
    assert 0 < (a.bits != u).any(axis=1).sum() < 40  # a mix of failures and successes


def test_noiseless_blocks_decode_at_once():
    # the punctured first 2Z bits are unknown to the receiver, so it takes an iteration
    code = LdpcCode.for_block(500, 2 / 3)
    u, L, _, rows = _llrs(code, 750, 2, 60.0, 8, 1)
    res = FastDecoder(20)(code, L, rows)
    assert np.array_equal(res.bits, u) and res.ok.all() and res.iterations.max() <= 2


def test_early_stop_does_not_change_successful_decodes():
    code = LdpcCode.for_block(1024, 0.5)
    u, L, _, rows = _llrs(code, 2048, 2, 1.5, 60, 2)  # Es/N0 1.5 dB: waterfall of R=1/2
    es = FastDecoder(20, early_stop=True)(code, L, rows)
    full = FastDecoder(20, early_stop=False)(code, L, rows)
    good = es.ok & (es.bits == u).all(axis=1)
    assert good.sum() > 30
    assert np.array_equal(es.bits[good], full.bits[good])
    assert es.iterations[good].max() < 20 and (full.iterations == 20).all()


@pytest.mark.skipif(load_kernel() is None, reason="no C compiler")
@pytest.mark.parametrize("early_stop", [True, False])
@pytest.mark.parametrize("k,rate,n,qm,esno", [(256, 0.5, 512, 2, 1.0), (3840, 0.75, 5120, 4, 10.2)])
def test_fixed_point_kernel_equals_its_twins(early_stop, k, rate, n, qm, esno):
    code = LdpcCode.for_block(k, rate)
    u, L, _, rows = _llrs(code, n, qm, esno, 40, 5)  # 40 frames: a full group and 8 more
    post = {}
    for backend in ("c", "portable", "numpy"):
        x = L.copy()
        r = FixedDecoder(12, early_stop=early_stop, backend=backend)(code, x, rows, overwrite=True)
        post[backend] = (x, r)
    (xc, c), (xp, p), (xn, nn) = post["c"], post["portable"], post["numpy"]
    assert np.array_equal(xc, xp) and np.array_equal(xc, xn)  # the posteriors themselves
    for r in (p, nn):
        assert np.array_equal(c.bits, r.bits) and np.array_equal(c.iterations, r.iterations)
        assert np.array_equal(c.ok, r.ok)
    assert 0 < (c.bits != u).any(axis=1).sum() < 40  # a mix of failures and successes


@pytest.mark.skipif(load_kernel() is None, reason="no C compiler")
def test_fixed_point_twins_agree_off_the_defaults():
    """A fractional target and a small alpha (the scale and the rounding of alpha * min
    computed alike); alpha above 1 is refused (the 16-bit product would overflow)."""
    code = LdpcCode.for_block(500, 2 / 3)
    u, L, _, rows = _llrs(code, 750, 2, 3.0, 33, 9)
    out = []
    for backend in ("c", "portable", "numpy"):
        x = L.copy()
        FixedDecoder(6, 0.55, target=10.3, backend=backend)(code, x, rows, overwrite=True)
        out.append(x)
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2])
    with pytest.raises(ValueError, match="alpha"):
        FixedDecoder(10, 1.01)


def test_fixed_point_frames_decode_as_if_alone():
    """Early stopping is per frame: a frame in a group of 32 returns what it returns alone."""
    code = LdpcCode.for_block(1024, 0.5)
    u, L, _, rows = _llrs(code, 2048, 2, 1.6, 36, 6)
    dec = FixedDecoder(20)
    group = dec(code, L, rows)
    alone = [dec(code, L[i : i + 1], rows) for i in range(len(L))]
    assert np.array_equal(group.bits, np.concatenate([a.bits for a in alone]))
    assert np.array_equal(group.iterations, np.concatenate([a.iterations for a in alone]))
    assert len(set(group.iterations.tolist())) > 3  # frames stopped at different iterations


def test_fixed_point_loses_little_against_float():
    code = LdpcCode.for_block(1024, 0.5)
    u, L, _, rows = _llrs(code, 2048, 2, 1.75, 1000, 7)  # BLER ~5% at 10 iterations
    errs = {
        name: int((d(code, L, rows).bits != u).any(axis=1).sum())
        for name, d in (("fast", FastDecoder(10)), ("fixed", FixedDecoder(10)))
    }
    assert 20 < errs["fast"] and errs["fixed"] <= 1.25 * errs["fast"] + 5, errs


def test_capped_check_messages_keep_decoded_frames_decoded():
    """Without early stopping, saturated posteriors drifted without the cap on the
    check-node messages: frames right at iteration ~5 were wrong again at iteration 10."""
    code = LdpcCode.for_block(1024, 0.5)
    u, L, _, rows = _llrs(code, 2048, 2, 3.0, 300, 8)  # far above the waterfall

    def errors(**kw):
        res = FixedDecoder(10, alpha=0.75, early_stop=False, target=20, **kw)(code, L, rows)
        return int((res.bits != u).any(axis=1).sum())

    assert errors() == 0
    assert errors(r_max=127) > 100


@pytest.fixture(scope="module")
def sionna():
    pytest.importorskip("torch")
    return pytest.importorskip("sionna.phy.fec.ldpc")


def test_sionna_backend_equals_ldpc5gdecoder(sionna):
    import torch

    k, n = 200, 400
    code = LdpcCode.for_block(k, k / n)
    u, L, idx, rows = _llrs(code, n, 1, 1.5, 64, 3)
    mine = SionnaDecoder(10, early_stop=False)(code, L, rows)
    enc = sionna.LDPC5GEncoder(k, n)
    ref = sionna.LDPC5GDecoder(enc, num_iter=10)(torch.from_numpy(-L[:, idx])).numpy()
    assert np.array_equal(mine.bits, ref.astype(np.uint8))
    stopped = SionnaDecoder(10, early_stop=True)(code, L, rows)  # resumable flooding state
    assert np.array_equal(stopped.bits, mine.bits)
    assert stopped.iterations.mean() < 10


def test_fast_and_sionna_agree_on_easy_blocks(sionna):
    code = LdpcCode.for_block(300, 0.5)
    u, L, _, rows = _llrs(code, 600, 2, 3.0, 50, 4)
    f = FastDecoder(20)(code, L, rows)
    s = SionnaDecoder(20)(code, L, rows)
    assert (f.bits == u).all() and (s.bits == u).all()


def _kernel_subprocess(tmp_path, **env):
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np; from channel.decoders import kernel_info, FastDecoder; "
        "from channel.ldpc import LdpcCode; c = LdpcCode.for_block(64, 0.5); "
        "L = np.full((2, c.n), 5.0, np.float32); r = FastDecoder(5)(c, L, "
        "c.active_rows(np.ones(c.n_cols, bool))); print(kernel_info(), int(r.ok.sum()))"
    )
    full = {
        **os.environ,
        "SEMCOM_CACHE_DIR": str(tmp_path / "cache"),
        "TMPDIR": str(tmp_path / "tmp"),
        **env,
    }
    full.pop("SEMCOM_LDPC_KERNEL", None)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, check=True
    )


@pytest.mark.skipif(load_kernel() is None, reason="no C compiler")
def test_kernel_builds_into_a_fresh_cache(tmp_path):
    out = _kernel_subprocess(tmp_path)
    assert out.stdout.split() == ["c", "2"]
    assert list((tmp_path / "cache" / "ldpc").glob("semcom_ldpc_*.so"))
    assert "unavailable" not in out.stderr


def test_without_a_compiler_numpy_is_used_with_one_warning(tmp_path):
    out = _kernel_subprocess(tmp_path, CC=str(tmp_path / "no-such-cc"))
    assert out.stdout.split() == ["numpy", "2"]
    lines = [ln for ln in out.stderr.splitlines() if "C kernel unavailable" in ln]
    assert len(lines) == 1 and "numpy" in lines[0]
