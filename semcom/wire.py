"""The daemons' wire: semcom types <-> ``semcom.v1`` messages (``protos/semcom.proto``).

Both ends use this module, so there is one implementation of the stream layout:

- the edge builds a :func:`make_header` for one transmission (what the link delivered,
  erasure markers included) and streams :func:`request_messages` (header, chunks of at
  most :data:`MAX_CHUNK_BYTES`, end marker);
- the cloud feeds the messages to an :class:`Assembler`, which checks every field and
  the stream layout and returns a :class:`WireItem` (the received descriptions and
  erasures, rebuilt as :class:`~semcom.types.Description` / :class:`~semcom.types.Erasure`)
  or raises :class:`~semcom.errors.WireFormatError` with a message that names the
  problem (the daemon answers INVALID_ARGUMENT);
- replies go through :func:`make_reply` / :func:`reply_to_dict`, whose ``info`` travels
  as JSON so numbers come back exactly (the record equals the in-process one).

:func:`agreed_settings` lists the config values both ends must share (the cloud names the
first that differs) and :func:`codebook_id` the codebook both must hold. No grpc import.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from protos import semcom_pb2 as pb
from semcom.errors import WireFormatError
from semcom.stages.envelope import MAX_DESCRIPTIONS, Envelope
from semcom.types import CATEGORIES, Description, Erasure, RateLedger

PROTOCOL = 1
SERVICE = "semcom.v1.EdgeCloud"
MIB = 1 << 20
MAX_CHUNK_BYTES = MIB  # data per chunk message (the contract's limit)
MAX_MESSAGE_BYTES = 4 * MIB  # gRPC per-message limit set on both ends
DEFAULT_MAX_REQUEST_BYTES = 64 * MIB  # all description bytes of one Submit
DEFAULT_MAX_PIXELS = 1 << 26  # original H x W (a lost image is concealed at it)
MAX_ID_CHARS = 512
MAX_QUESTION_CHARS = 8192
MAX_REASON_CHARS = 128
TASKS = ("caption", "retrieval", "vqa")
GRPC_TASKS = ("caption", "vqa", "retrieval")  # retrieval: Submit keeps the image, Rank ranks

# Config keys left out of the agreement: edge-only choices (the encoder, token selection)
# and machine-local paths whose content is checked by id instead (model id, codebook id).
NOT_AGREED = (
    "edge.model",
    "edge.select",
    "edge.quant.codebook",
    "cloud.model",
    "cloud.tasks",
    "cloud.conceal.stats",
)


# ------------------------------------------------------------------------------ identities


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def agreed_settings(cfg) -> dict[str, str]:
    """Dotted key -> canonical JSON of every ``edge.*`` / ``cloud.*`` value (hashed fields)
    that both daemons must share, except :data:`NOT_AGREED`."""
    from semcom.config import to_dict

    data = to_dict(cfg, hashed_only=True)
    out: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if any(prefix == k or prefix.startswith(k + ".") for k in NOT_AGREED):
            return
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}", v)
        else:
            out[prefix] = canonical(node)

    for section in ("edge", "cloud"):
        walk(section, data[section])
    return out


def settings_mismatch(edge: Mapping[str, str], cloud: Mapping[str, str]) -> str | None:
    """A message naming the first setting that differs, or None when they agree."""
    for key in sorted(set(edge) | set(cloud)):
        e, c = edge.get(key), cloud.get(key)
        if e != c:
            return (
                f"config setting {key} differs: the edge has "
                f"{'no such setting' if e is None else e}, the cloud has "
                f"{'no such setting' if c is None else c}; start both with the same config"
            )
    return None


def codebook_path(cfg):
    """The codebook file the token method uses, or None when it uses none."""
    if cfg.edge.method != "tokens":
        return None
    from semcom.stages.codebook import quant_codebook_path

    return quant_codebook_path(cfg.edge.quant, cfg.edge.model.name)


def codebook_id(cfg) -> str:
    """SHA-256 content hash of the codebook in use (``""`` when the method uses none)."""
    path = codebook_path(cfg)
    if path is None:
        return ""
    from semcom.stages.codebook import load_cached

    return load_cached(path).hash


def setup_id(setup: bytes) -> str:
    """What Submit headers call a stream setup: the first 16 hex digits of its SHA-256
    (``""`` for no setup)."""
    import hashlib

    return hashlib.sha256(setup).hexdigest()[:16] if setup else ""


def idempotency_key(run_id: str, tasks, sample_id: str) -> str:
    """The same for every retry of one transmission: ``<run id>/<tasks>/<sample id>``."""
    return f"{run_id}/{'+'.join(tasks)}/{sample_id}"


# ------------------------------------------------------------------------------ the edge


def _ledger_entries(ledger: RateLedger) -> list[pb.LedgerEntry]:
    return [
        pb.LedgerEntry(stage=s, category=c, bits=b) for (s, c), b in sorted(ledger.entries.items())
    ]


def _link_stats(stats) -> pb.LinkStats | None:
    if stats is None:
        return None
    g = lambda name, default=0: getattr(stats, name, default) or default  # noqa: E731
    return pb.LinkStats(
        info_bits=int(g("info_bits")),
        coded_bits=int(g("coded_bits")),
        channel_uses=int(g("channel_uses")),
        airtime_s=float(g("airtime_s", 0.0)),
        blocks=int(g("blocks")),
        block_errors=int(g("block_errors")),
        rounds=int(g("rounds")),
        delivered=bool(g("delivered", False)),
    )


def make_header(
    *,
    key: str,
    run_id: str,
    sample_id: str,
    image_id: str,
    tasks,
    question,
    original_hw,
    model_id: str,
    codebook_id: str,
    settings: Mapping[str, str],
    seed: int,
    received,
    link_cfg=None,
    link_stats=None,
    setup: str = "",
) -> tuple[pb.SubmitHeader, list[bytes]]:
    """The header of one transmission and the bytes of its delivered descriptions."""
    h, w = (int(x) for x in original_hw)
    header = pb.SubmitHeader(
        protocol=PROTOCOL,
        idempotency_key=key,
        run_id=run_id,
        sample_id=sample_id,
        image_id=image_id,
        tasks=list(tasks),
        height=h,
        width=w,
        model_id=model_id,
        codebook_id=codebook_id,
        settings=dict(settings),
        seed=int(seed),
        setup_id=setup,
    )
    if question is not None:
        header.question = question
    if link_cfg is not None:
        header.link.CopyFrom(
            pb.LinkState(
                link=link_cfg.link, snr_db=float(link_cfg.snr_db), snr_type=link_cfg.snr_type
            )
        )
    payloads = []
    stats = list(link_stats) if link_stats is not None else [None] * len(received)
    for r, st in zip(received, stats):
        if tuple(r.original_hw) != (h, w):
            raise ValueError(
                f"sample {sample_id}: description {r.index} has original size "
                f"{tuple(r.original_hw)}, the sample {(h, w)}"
            )
        d = pb.DescriptionHeader(index=r.index, count=r.count, image_id=r.image_id)
        if isinstance(r, Description):
            d.size = len(r.data)
            d.ledger.extend(_ledger_entries(r.ledger))
            payloads.append(bytes(r.data))
        elif isinstance(r, Erasure):
            d.erased = True
            d.erasure_reason = r.reason
        else:
            raise TypeError(f"not a description or an erasure: {type(r).__name__}")
        ls = _link_stats(st)
        if ls is not None:
            d.link.CopyFrom(ls)
        header.descriptions.append(d)
    return header, payloads


def request_messages(
    header: pb.SubmitHeader, payloads: list[bytes], *, chunk_bytes: int = MAX_CHUNK_BYTES
) -> Iterator[pb.SubmitRequest]:
    """The Submit stream: header, each delivered description in chunks, end marker."""
    if not 0 < chunk_bytes <= MAX_CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be in (0, {MAX_CHUNK_BYTES}], got {chunk_bytes}")
    yield pb.SubmitRequest(header=header)
    digest, total = hashlib.sha256(), 0
    delivered = [d.index for d in header.descriptions if not d.erased]
    for index, data in zip(delivered, payloads):
        view = memoryview(data)
        for off in range(0, len(data), chunk_bytes):
            part = bytes(view[off : off + chunk_bytes])
            digest.update(part)
            total += len(part)
            yield pb.SubmitRequest(chunk=pb.Chunk(index=index, offset=off, data=part))
    yield pb.SubmitRequest(end=pb.SubmitEnd(total_bytes=total, sha256=digest.digest()))


# ------------------------------------------------------------------------------ the cloud


@dataclass
class WireItem:
    """One transmission as the cloud rebuilt it from a Submit stream."""

    header: pb.SubmitHeader
    received: list[Description | Erasure]
    total_bytes: int
    digest: str  # content hash (everything that can change the answer): idempotency check
    link_stats: list[dict | None] = field(default_factory=list)
    setup: bytes = b""  # the stream setup the header names (the cloud fills it in)

    @property
    def key(self) -> str:
        return self.header.idempotency_key

    @property
    def sample_id(self) -> str:
        return self.header.sample_id

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.header.tasks)

    @property
    def question(self) -> str | None:
        return self.header.question if self.header.HasField("question") else None

    @property
    def original_hw(self) -> tuple[int, int]:
        return int(self.header.height), int(self.header.width)


class Assembler:
    """Checks a Submit stream message by message; :meth:`finish` returns the item.

    Every problem raises :class:`WireFormatError` naming it: a wrong protocol version,
    missing or oversized fields, inconsistent description counts or indices, a ledger
    that does not add up to the bytes, chunks out of order, oversized chunks or streams,
    a stream that ends mid-description or without its end marker, a digest mismatch,
    and descriptions whose envelope disagrees with the header.
    """

    def __init__(
        self,
        *,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_chunk_bytes: int = MAX_CHUNK_BYTES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        self.max_request_bytes = max_request_bytes
        self.max_chunk_bytes = max_chunk_bytes
        self.max_pixels = max_pixels
        self.header: pb.SubmitHeader | None = None
        self.ended = False
        self.received_bytes = 0
        self._bufs: list[bytearray] = []
        self._sizes: list[int] = []
        self._order: list[int] = []  # positions (in header order) of delivered descriptions
        self._cur = 0
        self._sha = hashlib.sha256()
        self._fill: list[int] = []
        self.declared_bytes = 0  # description bytes the header announces

    # -- messages --------------------------------------------------------------------
    def feed(self, msg: pb.SubmitRequest) -> None:
        part = msg.WhichOneof("part")
        if self.ended:
            raise WireFormatError("message after the end marker")
        if part is None:
            raise WireFormatError("empty message (no header, chunk or end)")
        if self.header is None and part != "header":
            raise WireFormatError(f"the first message must be the header, got a {part}")
        if part == "header":
            if self.header is not None:
                raise WireFormatError("a second header in one stream")
            self._check_header(msg.header)
            self.header = msg.header
        elif part == "chunk":
            self._chunk(msg.chunk)
        else:
            self._end(msg.end)

    def _check_header(self, h: pb.SubmitHeader) -> None:
        if h.protocol != PROTOCOL:
            raise WireFormatError(
                f"unsupported protocol version {h.protocol}; this cloud speaks version {PROTOCOL}"
            )
        for name in ("idempotency_key", "sample_id"):
            value = getattr(h, name)
            if not value:
                raise WireFormatError(f"header field {name} is empty")
        for name in (
            "idempotency_key",
            "sample_id",
            "run_id",
            "image_id",
            "model_id",
            "codebook_id",
        ):
            if len(getattr(h, name)) > MAX_ID_CHARS:
                raise WireFormatError(
                    f"header field {name} is longer than {MAX_ID_CHARS} characters"
                )
        if not h.tasks:
            raise WireFormatError("header names no task")
        for t in h.tasks:
            if t not in TASKS:
                raise WireFormatError(f"unknown task {t!r}; tasks are {', '.join(TASKS)}")
        if len(set(h.tasks)) != len(h.tasks):
            raise WireFormatError(f"tasks repeated: {list(h.tasks)}")
        if h.HasField("question") and len(h.question) > MAX_QUESTION_CHARS:
            raise WireFormatError(f"question longer than {MAX_QUESTION_CHARS} characters")
        if h.height <= 0 or h.width <= 0:
            raise WireFormatError(f"bad original image size {h.height}x{h.width}")
        if h.height * h.width > self.max_pixels:
            raise WireFormatError(
                f"original image size {h.height}x{h.width} exceeds this "
                f"cloud's limit of {self.max_pixels} pixels"
            )
        n = len(h.descriptions)
        if not 1 <= n <= MAX_DESCRIPTIONS:
            raise WireFormatError(
                f"{n} descriptions in the header; 1 to {MAX_DESCRIPTIONS} allowed"
            )
        counts = sorted({d.count for d in h.descriptions})
        if len(counts) != 1:
            raise WireFormatError(f"inconsistent description counts {counts}")
        count = counts[0]
        if not 1 <= count <= MAX_DESCRIPTIONS:
            raise WireFormatError(f"description count {count} out of range 1..{MAX_DESCRIPTIONS}")
        if n > count:
            raise WireFormatError(f"{n} descriptions in the header but count is {count}")
        seen: set[int] = set()
        total = 0
        for pos, d in enumerate(h.descriptions):
            if d.index >= count:
                raise WireFormatError(f"description index {d.index} out of range for count {count}")
            if d.index in seen:
                raise WireFormatError(f"description {d.index} appears twice")
            seen.add(d.index)
            if len(d.image_id) > MAX_ID_CHARS or len(d.erasure_reason) > MAX_REASON_CHARS:
                raise WireFormatError(f"description {d.index}: image id or erasure reason too long")
            if d.erased:
                if d.size or d.ledger:
                    raise WireFormatError(
                        f"description {d.index} is an erasure marker but "
                        f"declares {d.size} bytes / a rate ledger"
                    )
                continue
            if d.size == 0:
                raise WireFormatError(f"description {d.index} is delivered but empty")
            bits = 0
            for e in d.ledger:
                if e.category not in CATEGORIES:
                    raise WireFormatError(
                        f"description {d.index}: unknown rate category {e.category!r}"
                    )
                bits += e.bits
            if bits != 8 * d.size:
                raise WireFormatError(
                    f"description {d.index}: its rate ledger totals {bits} "
                    f"bits but it has {d.size} bytes ({8 * d.size} bits)"
                )
            total += d.size
            self._order.append(pos)
        if total > self.max_request_bytes:
            raise WireFormatError(
                f"the stream declares {total} bytes of descriptions, more "
                f"than this cloud's limit of {self.max_request_bytes}"
            )
        self._sizes = [int(d.size) for d in h.descriptions]
        self._bufs = [None] * len(h.descriptions)  # each allocated at its first chunk
        self._fill = [0] * len(h.descriptions)
        self.declared_bytes = total

    def _chunk(self, c: pb.Chunk) -> None:
        h = self.header
        if self._cur >= len(self._order):
            raise WireFormatError(f"chunk for description {c.index} after all declared bytes")
        pos = self._order[self._cur]
        want = h.descriptions[pos].index
        if c.index != want:
            raise WireFormatError(
                f"chunk for description {c.index}, expected description "
                f"{want} (delivered descriptions are sent in header order)"
            )
        n = len(c.data)
        if n == 0:
            raise WireFormatError(f"empty chunk for description {want}")
        if n > self.max_chunk_bytes:
            raise WireFormatError(
                f"chunk of {n} bytes exceeds the chunk limit of {self.max_chunk_bytes} bytes"
            )
        fill = self._fill[pos]
        if c.offset != fill:
            raise WireFormatError(
                f"chunk offset {c.offset} for description {want}, expected "
                f"{fill} (chunks must be contiguous)"
            )
        if fill + n > self._sizes[pos]:
            raise WireFormatError(
                f"chunk overruns description {want}: it declares "
                f"{self._sizes[pos]} bytes, the chunks carry {fill + n}"
            )
        if self.received_bytes + n > self.max_request_bytes:
            raise WireFormatError(
                f"stream exceeds this cloud's limit of {self.max_request_bytes} bytes"
            )
        if self._bufs[pos] is None:
            self._bufs[pos] = bytearray(self._sizes[pos])
        self._bufs[pos][fill : fill + n] = c.data
        self._fill[pos] = fill + n
        self._sha.update(c.data)
        self.received_bytes += n
        if self._fill[pos] == self._sizes[pos]:
            self._cur += 1

    def _incomplete(self) -> str | None:
        if self._cur < len(self._order):
            pos = self._order[self._cur]
            return (
                f"description {self.header.descriptions[pos].index} has "
                f"{self._fill[pos]} of {self._sizes[pos]} bytes"
            )
        return None

    def _end(self, e: pb.SubmitEnd) -> None:
        missing = self._incomplete()
        if missing:
            raise WireFormatError(f"stream ended mid-description: {missing}")
        if e.total_bytes != self.received_bytes:
            raise WireFormatError(
                f"end marker counts {e.total_bytes} bytes, the stream carried {self.received_bytes}"
            )
        if e.sha256 != self._sha.digest():
            raise WireFormatError(
                "SHA-256 of the description bytes does not match the end marker (corrupted stream)"
            )
        self.ended = True

    def discard(self) -> None:
        """Drop the buffers (the item :meth:`finish` returned keeps its own references)."""
        self._bufs = []

    # -- the item --------------------------------------------------------------------
    def finish(self) -> WireItem:
        if self.header is None:
            raise WireFormatError("empty stream: no header")
        if not self.ended:
            missing = self._incomplete()
            raise WireFormatError(
                "truncated stream: no end marker" + (f"; {missing}" if missing else "")
            )
        h = self.header
        hw = (int(h.height), int(h.width))
        received: list[Description | Erasure] = []
        stats: list[dict | None] = []
        for pos, d in enumerate(h.descriptions):
            image_id = d.image_id or h.image_id
            stats.append(_stats_dict(d.link) if d.HasField("link") else None)
            if d.erased:
                received.append(Erasure(image_id, d.index, d.count, hw, d.erasure_reason or "crc"))
                continue
            data = self._bufs[pos]  # the received bytes themselves (no copy)
            ledger = RateLedger()
            for e in d.ledger:
                ledger.add(e.stage, e.category, int(e.bits))
            if h.setup_id:  # a lean envelope: the method checks it under the setup
                received.append(Description(image_id, d.index, d.count, data, hw, ledger))
                continue
            try:
                env, _ = Envelope.unpack(bytes(data[:16]))
            except WireFormatError as exc:
                raise WireFormatError(f"description {d.index}: {exc}") from None
            if (env.index, env.count) != (d.index, d.count):
                raise WireFormatError(
                    f"description {d.index}: its envelope says description "
                    f"{env.index} of {env.count}, the header {d.index} of "
                    f"{d.count}"
                )
            if (env.height, env.width) != hw:
                raise WireFormatError(
                    f"description {d.index}: its envelope says "
                    f"{env.height}x{env.width}, the header {hw[0]}x{hw[1]}"
                )
            received.append(Description(image_id, d.index, d.count, data, hw, ledger))
        return WireItem(h, received, self.received_bytes, self._content_digest(), stats)

    def _content_digest(self) -> str:
        h = self.header
        desc = [
            [
                d.index,
                d.count,
                d.erased,
                d.erasure_reason,
                d.size,
                d.image_id,
                sorted([e.stage, e.category, e.bits] for e in d.ledger),
            ]
            for d in h.descriptions
        ]
        head = canonical(
            [
                h.protocol,
                h.idempotency_key,
                h.run_id,
                h.sample_id,
                h.image_id,
                list(h.tasks),
                h.question if h.HasField("question") else None,
                h.height,
                h.width,
                h.model_id,
                h.codebook_id,
                sorted(h.settings.items()),
                h.seed,
                desc,
                h.setup_id,
            ]
        )
        return hashlib.sha256(head.encode() + self._sha.digest()).hexdigest()


def _stats_dict(s: pb.LinkStats) -> dict:
    return {
        "info_bits": s.info_bits,
        "coded_bits": s.coded_bits,
        "channel_uses": s.channel_uses,
        "airtime_s": s.airtime_s,
        "blocks": s.blocks,
        "block_errors": s.block_errors,
        "rounds": s.rounds,
        "delivered": s.delivered,
    }


# ------------------------------------------------------------------------------ replies


def make_reply(*, key: str, sample_id: str, reply: dict, model_id: str) -> pb.SubmitReply:
    """The SubmitReply of one ``CloudSession.process`` reply (``{"outputs", "info"}``)."""
    from semcom.results import dumps

    info = dict(reply.get("info") or {})
    msg = pb.SubmitReply(
        idempotency_key=key, sample_id=sample_id, model_id=model_id, info_json=dumps(info)
    )
    for task, out in (reply.get("outputs") or {}).items():
        if isinstance(out, str):
            msg.outputs[task] = out
        else:
            msg.outputs_json[task] = dumps(out)
    ttm = info.get("tokens_to_model")
    if isinstance(ttm, numbers.Integral) and 0 <= ttm < 2**32:
        msg.tokens_to_model = int(ttm)
    dr = info.get("descriptions_received")
    if isinstance(dr, numbers.Integral) and 0 <= dr < 2**32:
        msg.descriptions_received = int(dr)
    cs = info.get("cloud_s")
    if isinstance(cs, numbers.Real):
        msg.cloud_s = float(cs)
    return msg


def reply_to_dict(msg: pb.SubmitReply) -> dict:
    """``{"outputs": {task: output}, "info": {...}}``, as ``CloudSession.process`` gives."""
    outputs: dict[str, Any] = dict(msg.outputs)
    for task, text in msg.outputs_json.items():
        outputs[task] = json.loads(text)
    info = json.loads(msg.info_json) if msg.info_json else {}
    return {"outputs": outputs, "info": info}
