"""The PUSCH link on Sionna: semcom's coding chain bit for bit against Sionna's
TBEncoder, the fast decoder inside Sionna's receiver, and the link's ledger."""

import numpy as np
import pytest

from channel.crc import crc_attach
from channel.ldpc import LdpcCode
from semcom.config.channel import ChannelConfig
from semcom.linkmodel.segmentation import segment
from semcom.types import Description, Erasure

# (MCS table, MCS index, PRBs): one and several code blocks, QPSK .. 256-QAM
CASES = [(1, 3, 4), (1, 9, 24), (1, 16, 51), (1, 27, 51), (2, 24, 30), (2, 2, 2)]


@pytest.fixture(scope="module")
def torch_sionna():
    torch = pytest.importorskip("torch")
    pytest.importorskip("sionna.phy")
    torch.set_num_threads(1)
    return torch


@pytest.fixture(scope="module")
def sionna_nr(torch_sionna):
    from sionna.phy import nr

    return nr


@pytest.mark.parametrize("table,mcs,prb", CASES)
def test_segmentation_crc_and_coding_equal_sionnas_tbencoder(sionna_nr, table, mcs, prb):
    """TB CRC, segmentation with CRC24B, LDPC and rate matching with the bit interleaver:
    semcom's chain reproduces Sionna's TBEncoder output (scrambler off) bit for bit."""
    import torch

    pc = sionna_nr.PUSCHConfig()
    pc.carrier.n_size_grid = prb
    pc.n_size_bwp = prb
    pc.tb.mcs_table, pc.tb.mcs_index = table, mcs
    qm, rate = pc.tb.num_bits_per_symbol, pc.tb.target_coderate
    enc = sionna_nr.TBEncoder(
        pc.tb_size, pc.num_coded_bits, rate, qm, use_scrambler=False, channel_type="PUSCH"
    )
    A = enc.tb_size
    s = segment(A, rate, "38.212")
    assert (s.num_cbs, s.k_prime, s.pad_bits) == (enc.num_cbs, enc.ldpc_encoder.k, 0)
    assert s.tb_crc == ("CRC16" if enc.tb_crc_encoder.crc_length == 16 else "CRC24A")
    u = np.random.default_rng(mcs).integers(0, 2, (2, A), dtype=np.uint8)
    ref = enc(torch.tensor(u, dtype=torch.float32)).numpy().astype(np.uint8)
    tb = crc_attach(u, s.tb_crc)
    cbs = tb.reshape(2 * s.num_cbs, -1)
    if s.num_cbs > 1:
        cbs = crc_attach(cbs, "CRC24B")
    code = LdpcCode.build(s.bg, s.k_prime, A + (16 if s.tb_crc == "CRC16" else 24))
    assert code.z == enc.ldpc_encoder.z
    cw = code.encode(cbs).reshape(2, s.num_cbs, -1)
    out = np.concatenate(
        [cw[:, i][:, code.rm_indices(int(e), 0, qm)] for i, e in enumerate(enc.cw_lengths)],
        axis=1,
    )
    assert np.array_equal(out, ref)


def descs(n, size, seed=0):
    rng = np.random.default_rng(seed)
    return [
        Description(f"i{j}", 0, 1, rng.integers(0, 256, size, dtype=np.uint8).tobytes(), (96, 96))
        for j in range(n)
    ]


def test_pusch_link_delivers_bit_exact_and_accounts_slots(torch_sionna):
    from channel import build_link

    cfg = ChannelConfig(link="pusch", mcs=9, snr_db=12.0, bandwidth_mhz=10)
    link = build_link(cfg)
    tbs = link.chain(9).tbs
    d = descs(6, 700, seed=1)
    res = link.transmit(d, np.random.default_rng(0))
    assert [r.data for r in res.received] == [x.data for x in d]
    st = res.stats[0]
    n_tb = -(-8 * 700 // tbs)
    assert st.tbs == n_tb and st.pad_bits == n_tb * tbs - 5600 and st.mcs == 9
    assert st.channel_uses == n_tb * cfg.n_rb * 12 * 14
    assert st.airtime_s == pytest.approx(n_tb * 0.5e-3)
    # far below the waterfall everything is lost, and only CRCs decide
    low = build_link(ChannelConfig(link="pusch", mcs=9, snr_db=-5.0, bandwidth_mhz=10))
    res = low.transmit(d, np.random.default_rng(0))
    assert all(isinstance(r, Erasure) for r in res.received)
    # the same stream gives the same outcome
    a = link.transmit(d, np.random.default_rng(5)).stats
    b = link.transmit(d, np.random.default_rng(5)).stats
    assert a == b


@pytest.mark.slow
def test_fast_decoder_in_the_receiver_decides_like_sionnas(torch_sionna):
    """Same slots (same seed, so the same noise), each decoder: in the waterfall they
    lose about as many TBs; every TB either delivers is bit-exact."""
    from channel import build_link

    d = descs(60, 300, seed=2)
    lost = {}
    for dec in ("fast", "fixed", "sionna"):
        cfg = ChannelConfig(link="pusch", mcs=4, snr_db=-1.5, bandwidth_mhz=5, decoder=dec)
        res = build_link(cfg).transmit(d, np.random.default_rng(9))
        for r, x in zip(res.received, d):
            assert isinstance(r, Erasure) or r.data == x.data
        lost[dec] = sum(isinstance(r, Erasure) for r in res.received)
    assert 0 < lost["sionna"] < 60
    assert 0 < lost["fast"] < 60 and abs(lost["fast"] - lost["sionna"]) <= 15, lost
    assert abs(lost["fixed"] - lost["fast"]) <= 10, lost


@pytest.mark.slow
@pytest.mark.parametrize(
    "fading,est,harq", [("tdl-a", "ls", "none"), ("cdl-c", "perfect", "chase")]
)
def test_pusch_over_38901_channels(torch_sionna, fading, est, harq):
    from channel import build_link

    cfg = ChannelConfig(
        link="pusch",
        mcs=5,
        snr_db=30.0,
        bandwidth_mhz=5,
        fading=fading,
        speed_kmh=30,
        channel_estimation=est,
        harq=harq,
        harq_max_rounds=2,
    )
    d = descs(8, 200, seed=3)
    res = build_link(cfg).transmit(d, np.random.default_rng(1))
    ok = [r for r in res.received if not isinstance(r, Erasure)]
    assert len(ok) >= 6 and all(r.data == x.data for r, x in zip(res.received, d) if r in ok)


@pytest.mark.slow
def test_pusch_link_adaptation_follows_the_snr(torch_sionna):
    from channel import build_link

    d = descs(12, 200, seed=4)
    chosen = []
    for snr in (0.0, 20.0):
        link = build_link(ChannelConfig(link="pusch", mcs="auto", snr_db=snr, bandwidth_mhz=5))
        res = link.transmit(d, np.random.default_rng(1))
        chosen.append(max(s.mcs for s in res.stats))
        assert all(isinstance(r, Erasure) or r.data == x.data for r, x in zip(res.received, d))
        assert sum(isinstance(r, Erasure) for r in res.received) <= 4
        assert min(s.mcs for s in res.stats) >= 3  # PUSCH: rates >= 1/5 only
    assert chosen[0] < chosen[1]
