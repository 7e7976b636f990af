"""The wire (semcom/wire.py) without a server: round trips, and every bad-input class."""

import hashlib

import pytest

from protos import semcom_pb2 as pb
from semcom import wire
from semcom.config import load_config
from semcom.errors import WireFormatError
from semcom.stages.envelope import Envelope
from semcom.types import Description, Erasure, RateLedger


def _desc(index=0, count=1, body=b"\xff\xd8body", hw=(96, 96), method="jpeg"):
    data, led = Envelope(method, index, count, *hw).wrap(
        body, RateLedger().add(method, "payload", 8 * len(body))
    )
    return Description("img0", index, count, data, hw, led)


def _header(received, **kw):
    args = dict(
        key="run/caption/s0",
        run_id="run",
        sample_id="s0",
        image_id="img0",
        tasks=["caption"],
        question=None,
        original_hw=(96, 96),
        model_id="m1",
        codebook_id="",
        settings={"edge.method": '"jpeg"'},
        seed=3,
        received=received,
    )
    args.update(kw)
    return wire.make_header(**args)


def _assemble(messages, **limits):
    asm = wire.Assembler(**limits)
    for m in messages:
        asm.feed(m)
    return asm.finish()


def test_round_trip_keeps_bytes_ledgers_erasures_and_order():
    d0 = _desc(0, 3, b"a" * 3000)
    d2 = _desc(2, 3, b"c" * 10)
    received = [d2, Erasure("img0", 1, 3, (96, 96), "crc"), d0]
    header, payloads = _header(received, question="what?")
    msgs = list(wire.request_messages(header, payloads, chunk_bytes=1000))
    assert sum(m.WhichOneof("part") == "chunk" for m in msgs) == 1 + 4  # 14 B, 3004 B
    item = _assemble(msgs)
    assert [type(r).__name__ for r in item.received] == ["Description", "Erasure", "Description"]
    assert item.received[0].data == d2.data and item.received[2].data == d0.data
    assert item.received[2].ledger.entries == d0.ledger.entries
    assert item.received[1].reason == "crc" and item.received[1].index == 1
    assert item.question == "what?" and item.original_hw == (96, 96) and item.tasks == ("caption",)
    assert item.total_bytes == len(d0.data) + len(d2.data)
    # the digest changes with the content, not with the chunking
    again = _assemble(wire.request_messages(header, payloads, chunk_bytes=7))
    assert again.digest == item.digest
    other, p2 = _header([_desc(0, 1, b"different")])
    assert _assemble(wire.request_messages(other, p2)).digest != item.digest


def test_chunks_are_at_most_one_mib():
    big = _desc(0, 1, b"x" * (2 * wire.MIB + 5))
    header, payloads = _header([big])
    msgs = list(wire.request_messages(header, payloads))
    sizes = [len(m.chunk.data) for m in msgs if m.WhichOneof("part") == "chunk"]
    assert max(sizes) == wire.MAX_CHUNK_BYTES == 1 << 20 and len(sizes) == 3
    assert all(m.ByteSize() < wire.MAX_MESSAGE_BYTES for m in msgs)
    with pytest.raises(ValueError):
        list(wire.request_messages(header, payloads, chunk_bytes=wire.MAX_CHUNK_BYTES + 1))


def _bad_header(mutate):
    header, payloads = _header([_desc()])
    mutate(header)
    return list(wire.request_messages(header, payloads))


def _expect(msgs, needle, **limits):
    with pytest.raises(WireFormatError) as exc:
        _assemble(msgs, **limits)
    assert needle in str(exc.value), str(exc.value)


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda h: setattr(h, "protocol", 2), "unsupported protocol version 2"),
        (lambda h: setattr(h, "idempotency_key", ""), "idempotency_key is empty"),
        (lambda h: h.tasks.append("dance"), "unknown task 'dance'"),
        (lambda h: setattr(h, "height", 0), "bad original image size"),
        (
            lambda h: (setattr(h, "height", 10000), setattr(h, "width", 10000)),
            "exceeds this cloud's limit of 67108864 pixels",
        ),
        (lambda h: setattr(h.descriptions[0], "count", 17), "out of range"),
        (lambda h: setattr(h.descriptions[0], "index", 1), "index 1 out of range for count 1"),
        (
            lambda h: h.descriptions[0].ledger.add(stage="x", category="payload", bits=8),
            "rate ledger totals",
        ),
        (
            lambda h: setattr(h.descriptions[0].ledger[0], "category", "magic"),
            "unknown rate category",
        ),
        (lambda h: setattr(h.descriptions[0], "erased", True), "erasure marker but declares"),
    ],
)
def test_bad_headers_are_named(mutate, needle):
    _expect(_bad_header(mutate), needle)


def test_inconsistent_counts_and_duplicates():
    header, payloads = _header([_desc(0, 2), _desc(1, 3)])
    _expect(list(wire.request_messages(header, payloads)), "inconsistent description counts")
    header, payloads = _header([_desc(0, 2), _desc(0, 2)])
    _expect(list(wire.request_messages(header, payloads)), "description 0 appears twice")


def test_garbage_bytes_and_envelope_mismatches():
    # garbage: no valid envelope (version bits 0)
    g = Description(
        "img0", 0, 1, b"\x00\x01garbage", (96, 96), RateLedger().add("x", "payload", 72)
    )
    header, payloads = _header([g])
    _expect(list(wire.request_messages(header, payloads)), "unsupported envelope version")
    # the envelope says 64x64, the header 96x96: inconsistent shapes
    d = _desc(hw=(64, 64))
    header, payloads = _header([Description("img0", 0, 1, d.data, (96, 96), d.ledger)])
    _expect(list(wire.request_messages(header, payloads)), "envelope says 64x64")
    # the envelope says description 0 of 2, the header 0 of 1
    d = _desc(0, 2)
    header, payloads = _header([Description("img0", 0, 1, d.data, (96, 96), d.ledger)])
    _expect(list(wire.request_messages(header, payloads)), "envelope says description 0 of 2")


def test_truncated_and_malformed_streams():
    header, payloads = _header([_desc(0, 1, b"y" * 5000)])
    msgs = list(wire.request_messages(header, payloads, chunk_bytes=1000))
    _expect(msgs[:-1], "truncated stream: no end marker")
    _expect(msgs[:3], "description 0 has 2000 of")
    # end marker right after a partial description: ended mid-description
    _expect(msgs[:3] + [msgs[-1]], "stream ended mid-description")
    _expect(msgs[1:], "the first message must be the header")
    _expect([], "empty stream")
    _expect([msgs[0], msgs[0]], "a second header")
    _expect(msgs + [msgs[1]], "after the end marker")
    _expect([msgs[0], msgs[2]], "chunk offset 1000")
    bad_end = pb.SubmitRequest(
        end=pb.SubmitEnd(
            total_bytes=msgs[-1].end.total_bytes, sha256=hashlib.sha256(b"no").digest()
        )
    )
    _expect(msgs[:-1] + [bad_end], "does not match the end marker")


def test_oversized_streams_and_chunks():
    header, payloads = _header([_desc(0, 1, b"z" * 5000)])
    msgs = list(wire.request_messages(header, payloads))
    _expect(msgs, "more than this cloud's limit of 1000", max_request_bytes=1000)
    _expect(msgs, "exceeds the chunk limit of 100 bytes", max_chunk_bytes=100)
    # chunks carrying more than the header declared
    extra = pb.SubmitRequest(chunk=pb.Chunk(index=0, offset=0, data=b"q" * 6000))
    _expect([msgs[0], extra], "chunk overruns description 0")


def test_agreed_settings_name_the_difference_and_skip_edge_only_keys():
    a = wire.agreed_settings(load_config(None, ["edge.method=jpeg"]))
    b = wire.agreed_settings(load_config(None, ["edge.method=jpeg", "edge.image.quality=80"]))
    c = wire.agreed_settings(
        load_config(
            None,
            ["edge.method=jpeg", "edge.select.budget=8", "channel.snr_db=1", "cloud.tasks=[vqa]"],
        )
    )
    assert a["edge.method"] == '"jpeg"' and "edge.image.quality" in a
    assert not any(k.startswith(("edge.select", "edge.model", "cloud.model")) for k in a)
    assert wire.settings_mismatch(a, c) is None  # edge-only choices may differ
    msg = wire.settings_mismatch(a, b)
    assert "edge.image.quality" in msg and "50" in msg and "80" in msg


def test_reply_round_trip_is_exact():
    reply = {
        "outputs": {"caption": "a red cube", "other": [1, 2]},
        "info": {"tokens_to_model": 144, "cloud_s": 0.1 + 0.2, "x": None},
    }
    msg = wire.make_reply(key="k", sample_id="s", reply=reply, model_id="m")
    back = wire.reply_to_dict(pb.SubmitReply.FromString(msg.SerializeToString()))
    assert back == reply and msg.tokens_to_model == 144
