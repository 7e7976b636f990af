"""CRC, LDPC code construction, encoder, rate matching, segmentation and QAM: checked
against TS 38.212/38.211 rules and bit-exactly against Sionna's implementations."""

import numpy as np
import pytest

from channel.crc import crc_attach, crc_check, crc_parity
from channel.framing import Numerology, plan_tb, split_bytes
from channel.ldpc import K_CB, LdpcCode, lifting_size, select_base_graph
from channel.modulation import demodulate, modulate


@pytest.fixture(scope="module")
def torch_sionna():
    torch = pytest.importorskip("torch")
    pytest.importorskip("sionna.phy")
    return torch


# ---- CRC -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["CRC24A", "CRC24B", "CRC16"])
def test_crc_matches_sionna(torch_sionna, name):
    from sionna.phy.fec.crc import CRCEncoder

    rng = np.random.default_rng(1)
    for k in (8, 77, 1000):
        u = rng.integers(0, 2, (3, k), dtype=np.uint8)
        ref = CRCEncoder(name)(torch_sionna.tensor(u, dtype=torch_sionna.float32)).numpy()
        assert np.array_equal(crc_attach(u, name), ref.astype(np.uint8))


def test_crc_known_value():
    # CRC-16/XMODEM (poly 0x1021, init 0, no reflection) of "123456789" is 0x31C3
    bits = np.unpackbits(np.frombuffer(b"123456789", np.uint8))
    par = crc_parity(bits, "CRC16")
    assert int("".join(map(str, par)), 2) == 0x31C3


def test_crc_detects_every_corruption_pattern():
    rng = np.random.default_rng(2)
    n = 512
    u = rng.integers(0, 2, (1, n), dtype=np.uint8)
    coded = crc_attach(u, "CRC24A")[0]
    patterns = []
    for i in range(n + 24):  # all single-bit errors
        e = np.zeros(n + 24, np.uint8)
        e[i] = 1
        patterns.append(e)
    for _ in range(2000):  # random bursts up to 24 bits
        e = np.zeros(n + 24, np.uint8)
        start, length = rng.integers(0, n), rng.integers(1, 25)
        e[start : start + length] = rng.integers(0, 2, min(length, n + 24 - start))
        e[start] = 1
        patterns.append(e)
    for _ in range(2000):  # random dense corruptions
        patterns.append(
            (rng.random(n + 24) < 0.1).astype(np.uint8) | np.eye(1, n + 24, 5, dtype=np.uint8)[0]
        )
    corrupted = coded[None, :] ^ np.array(patterns)
    assert crc_check(coded[None], "CRC24A").all()
    assert not crc_check(corrupted, "CRC24A").any()


# ---- base graph, lifting, encoder ------------------------------------------------------
def test_base_graph_and_lifting_follow_38212():
    assert select_base_graph(292, 0.9) == 2  # A <= 292
    assert select_base_graph(3824, 0.67) == 2  # A <= 3824 and R <= 0.67
    assert select_base_graph(3825, 0.5) == 1
    assert select_base_graph(10000, 0.25) == 2  # R <= 0.25
    assert select_base_graph(1000, 0.7) == 1
    assert lifting_size(1024, 2) == (104, 6)  # K=1024 R=1/2: BG2, Z=104 (METHODS 1.4)
    assert lifting_size(8448, 1) == (384, 1)
    assert lifting_size(100, 2) == (18, 4)  # K_b = 6 below 192 bits: 6*18 >= 100
    code = LdpcCode.for_block(1024, 0.5)
    assert (code.bg, code.z, code.k, code.n, code.filler) == (2, 104, 1040, 5408, 16)


@pytest.mark.parametrize("bg,k", [(2, 40), (2, 1024), (2, 3840), (1, 500), (1, 8448)])
def test_encoder_satisfies_all_parity_checks(bg, k):
    code = LdpcCode.build(bg, k)
    u = np.random.default_rng(k).integers(0, 2, (4, k), dtype=np.uint8)
    c = code.encode(u)
    assert np.array_equal(c[:, :k], u) and not c[:, k : code.k].any()
    assert code.check(c).all()
    c[0, k + code.z * 5] ^= 1  # a wrong parity bit breaks a check
    assert not code.check(c)[0] and code.check(c)[1:].all()
    H = code.pcm()
    assert not ((H @ c[1:].T.astype(np.int64)) % 2).any()


@pytest.mark.parametrize(
    "k,n,qm",
    [
        (1024, 2048, 1),
        (512, 1024, 2),
        (100, 200, 4),
        (3840, 7680, 6),
        (4000, 6000, 8),
        (300, 400, 4),
    ],
)
def test_encoder_and_rate_matching_match_sionna(torch_sionna, k, n, qm):
    """Bit-exact against Sionna's LDPC5GEncoder: every RV, with the bit interleaver."""
    from sionna.phy.fec.ldpc import LDPC5GEncoder

    enc = LDPC5GEncoder(k, n, num_bits_per_symbol=qm if qm > 1 else None)
    code = LdpcCode.build(1 if enc._bg == "bg1" else 2, k)
    assert code.z == enc.z
    u = np.random.default_rng(3).integers(0, 2, (3, k), dtype=np.uint8)
    c = code.encode(u)
    ref = enc(torch_sionna.tensor(u, dtype=torch_sionna.float32), rv=[0, 1, 2, 3]).numpy()
    for i, rv in enumerate(range(4)):
        assert np.array_equal(c[:, code.rm_indices(n, rv, qm)], ref[:, i].astype(np.uint8))


def test_rate_matching_skips_filler_and_repeats_cyclically():
    code = LdpcCode.for_block(1000, 0.5)  # 40 filler bits
    idx = code.rm_indices(code.n_cb - code.filler + 100, 0, 1)
    assert not np.any((idx >= code.k_prime) & (idx < code.k))
    assert idx.min() >= 2 * code.z  # the first 2Z columns are punctured
    assert np.array_equal(idx[-100:], idx[:100])  # past the buffer it wraps around
    assert code.k0(0) == 0 and code.k0(2) % code.z == 0 and code.k0(1) < code.k0(2) < code.k0(3)


# ---- segmentation and framing ---------------------------------------------------------
@pytest.mark.parametrize(
    "A,R,qm",
    [
        (8, 0.5, 2),
        (1000, 1 / 3, 4),
        (3816, 0.5, 2),
        (3824, 0.5, 2),
        (20000, 0.5, 4),
        (50000, 0.75, 6),
        (9000, 0.2, 2),
    ],
)
def test_segmentation(A, R, qm):
    p = plan_tb(A, R, qm)
    L = 24
    assert p.k_prime <= K_CB[p.bg]
    if p.num_cbs == 1:
        assert p.k_prime == A + L + p.pad_bits
    else:
        assert p.cb_crc == "CRC24B" and p.pad_bits < p.num_cbs
        assert p.num_cbs * (p.k_prime - 24) == A + L + p.pad_bits
    assert p.e % qm == 0 and abs(p.k_prime / p.e - R) < qm / p.e + 1e-9
    assert p.code.z * (22 if p.bg == 1 else 10) >= p.k_prime


def test_crc16_option_follows_38212():
    assert plan_tb(3824, 0.5, 2, "38.212").tb_crc == "CRC16"
    assert plan_tb(3832, 0.5, 2, "38.212").tb_crc == "CRC24A"
    assert plan_tb(100, 0.5, 2, "crc24a").tb_crc == "CRC24A"
    assert plan_tb(3824, 0.5, 2, "38.212").num_cbs == 1  # 3824 + 16 fills one BG2 block


def test_split_and_numerology():
    assert split_bytes(1000, 3816) == [334, 333, 333]
    assert sum(split_bytes(123457, 800)) == 123457 and max(split_bytes(123457, 800)) <= 100
    num = Numerology(scs_khz=30, n_rb=51, symbols_per_slot=14)
    assert num.slot_s == pytest.approx(0.5e-3) and num.re_per_slot == 51 * 12 * 14
    assert num.airtime_s(num.re_per_slot) == pytest.approx(0.5e-3)
    assert num.slots(num.re_per_slot + 1) == 2


# ---- QAM --------------------------------------------------------------------------------
@pytest.mark.parametrize("qm", [2, 4, 6, 8])
def test_qam_matches_sionna_38211_and_app_demapper(torch_sionna, qm):
    from sionna.phy.mapping import Constellation, Demapper, Mapper

    rng = np.random.default_rng(qm)
    bits = rng.integers(0, 2, (2, qm * 64), dtype=np.uint8)
    x = modulate(bits, qm)
    c = Constellation("qam", qm)
    ref = Mapper(constellation=c)(torch_sionna.tensor(bits, dtype=torch_sionna.float32)).numpy()
    assert np.allclose(x, ref, atol=1e-6)
    no = 0.2
    y = x + np.sqrt(no / 2) * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape))
    llr = demodulate(y, np.full(y.shape, no), qm)
    logits = Demapper("app", constellation=c)(
        torch_sionna.tensor(y.astype(np.complex64)), torch_sionna.tensor(no)
    ).numpy()
    assert np.allclose(llr, -logits, atol=1e-3, rtol=1e-4)  # Sionna: log P(1)/P(0)


@pytest.mark.parametrize("qm", [1, 2, 4, 6, 8])
def test_qam_unit_energy_and_noiseless_hard_decisions(qm):
    bits = ((np.arange(2**qm)[:, None] >> np.arange(qm)) & 1).astype(np.uint8).reshape(1, -1)
    x = modulate(bits, qm)
    assert np.mean(np.abs(x) ** 2) == pytest.approx(1.0)
    llr = demodulate(x, np.full(x.shape, 1e-4), qm)
    assert np.array_equal((llr < 0).astype(np.uint8), bits)


def test_partial_encoding_equals_the_full_codeword_where_it_is_read():
    code = LdpcCode.for_block(1024, 0.5)
    u = np.random.default_rng(5).integers(0, 2, (4, 1024), dtype=np.uint8)
    full = code.encode(u)
    for e, qm in ((2048, 2), (1200, 4), (4000, 2)):
        idx = code.rm_indices(e, 0, qm)
        upto = int(idx.max()) // code.z + 1
        part = code.encode(u, upto_col=upto)
        assert np.array_equal(part[:, idx], full[:, idx])
        assert np.array_equal(part[:, : upto * code.z], full[:, : upto * code.z])
