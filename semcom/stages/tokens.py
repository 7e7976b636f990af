"""The token description wire format (v2): a lean description under a stream setup.

What is constant for a stream goes once into the setup (:class:`TokenStream`, sent as a
:class:`~semcom.stages.setup.StreamSetup`): the vision model, the patch grid and token
dimension, the quantiser with the hashes of its codebook and token prior, the number of
descriptions and how tokens are dealt to them, the token budget, where the CLS token
goes and the usual image size. A description then carries only its own bits::

    -- envelope (stage "envelope", header) ----------------------------------------------
    index                 ceil(log2 D) bits (none for one description)
    size                  1 bit: 0 = the setup's usual size, 1 = H, W varints follow
    -- token header (stage "tokens", header) -------------------------------------------
    count                 1 bit: 0 = the count the budget implies; 1 = the count follows
                          (ceil(log2 (P+1)) bits); no bit without a fixed budget
    extras                8 bits, only when the setup does not fix their number
    -- side info (stage "positions", side_info) -----------------------------------------
    own extras            which of the E position-less tokens are this description's
    share                 union mode, balanced assignment or redundancy: which kept
                          slots are this description's (interleaved shares are implied)
    kept positions        combinatorial or bitmap, when there is no token prior
    -- quantiser side info (stage "quant", side_info) -----------------------------------
    scalar with the description's own range: lo, hi per channel as float16
    -- payload (stage "quant", payload) -------------------------------------------------
    values                fixed width, when not entropy-coded
    -- one arithmetic code to the end (stages "positions" and "quant") ------------------
    kept positions        under the token prior's context model (see semcom.stages.prior)
    values                entropy-coded: codebook indices under each stage's learned
                          usage counts, scalar levels under an adaptive model

The arithmetic code ends on the description's last byte (it absorbs the padding); its
bits are booked to ``positions`` (side_info) as the positions' ideal code length and the
rest to ``quant`` (payload), so the ledger still sums to ``8 * len(bytes)``.

*Slots* number the kept tokens' places: patch ``p`` is slot ``p``, extra ``e`` is slot
``P + e``. ``own`` descriptions carry their own slots only (a lost description's tokens
are then simply not there: the cloud fills every empty position from the prior);
``union`` descriptions each carry the whole kept set plus their share, so the cloud knows
where lost tokens were and can conceal them from their neighbours.

>>> import numpy as np
>>> st = TokenStream(model="m", grid=(4, 4), dim=3, budget=2, hw=(32, 32))
>>> wire = TokenWire(st)
>>> x = TokenDescription(0, slots=np.array([2, 9]), tokens=np.ones((2, 3), np.float32))
>>> p = wire.encode(x); p.ledger.total() == 8 * len(p.data), p.ledger.by_category()["header"]
(True, 3)
>>> d = TokenWire(TokenStream.from_setup(st.setup())).decode(p.data)
>>> d.slots.tolist(), d.tokens.tolist()
([2, 9], [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from semcom.errors import WireFormatError
from semcom.stage import Stage
from semcom.stages import entropy as ec
from semcom.stages.bits import BitReader, BitWriter
from semcom.stages.envelope import Envelope
from semcom.stages.mdc import MDC
from semcom.stages.positions import POSITIONS, count_bits
from semcom.stages.quant import Fp16Quantizer, Quantizer, ScalarQuantizer, VQQuantizer
from semcom.stages.setup import StreamEnvelope, StreamSetup

VERSION = 2
MAX_EXTRAS = 255
CLS_MODES = ("none", "every", "first")


def short_hash(h: str | None) -> str | None:
    """The first 16 hex digits of a content hash (what setups carry), or None."""
    return None if h is None else str(h)[:16]


@dataclass(frozen=True)
class TokenStream:
    """The agreed settings of a token stream: what the setup carries.

    ``cls``: which descriptions carry the CLS token (``none``, ``every``, ``first``);
    ``budget``: kept patch tokens per image when fixed (None: varies); ``extras``: the
    number of position-less tokens per image when fixed (None: each description says);
    ``positions``: ``own`` or ``union`` side info; ``codebook`` / ``prior``: the first 16
    hex digits of their hashes (None when not used); ``hw``: the usual image size.
    """

    model: str
    grid: tuple[int, int]
    dim: int
    cls: str = "none"
    descriptions: int = 1
    assignment: str = "interleave"
    redundancy: int = 0
    positions: str = "own"
    budget: int | None = None
    extras: int | None = 0
    quant: str = "none"
    bits: int = 0
    entropy: bool = False
    metric: str = "l2"
    scalar_range: str = "image"
    codebook: str | None = None
    prior: str | None = None
    hw: tuple[int, int] | None = None

    def __post_init__(self):
        object.__setattr__(self, "grid", tuple(int(v) for v in self.grid))
        if self.hw is not None:
            object.__setattr__(self, "hw", tuple(int(v) for v in self.hw))
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise WireFormatError(f"bad patch grid {self.grid}")
        if self.cls not in CLS_MODES:
            raise WireFormatError(f"unknown CLS mode {self.cls!r}")
        if self.positions not in ("own", "union"):
            raise WireFormatError(f"unknown positions mode {self.positions!r}")
        if self.quant not in ("none", "scalar", "codebook"):
            raise WireFormatError(f"unknown quantiser {self.quant!r}")
        if not 1 <= self.descriptions <= 255:
            raise WireFormatError(f"bad description count {self.descriptions}")
        if self.extras is not None and not 0 <= self.extras <= MAX_EXTRAS:
            raise WireFormatError(f"bad extras count {self.extras}")

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def union(self) -> bool:
        return self.positions == "union" and self.descriptions > 1

    def carries_cls(self, index: int) -> bool:
        return self.cls == "every" or (self.cls == "first" and index == 0)

    def setup(self) -> StreamSetup:
        """The setup: the fields that differ from their defaults (both ends know those)."""
        fields = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.default is dataclasses.MISSING or v != f.default:
                fields[f.name] = list(v) if isinstance(v, tuple) else v
        return StreamSetup("tokens", {"v": VERSION, **fields})

    @classmethod
    def from_setup(cls, setup: StreamSetup) -> TokenStream:
        if setup.method != "tokens":
            raise WireFormatError(f"stream setup is for '{setup.method}', not 'tokens'")
        if setup.get("v") != VERSION:
            raise WireFormatError(
                f"token stream setup version {setup.get('v')} (this reads {VERSION})"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(setup.fields) - names - {"v"})
        if unknown:
            raise WireFormatError(f"token stream setup has unknown fields {unknown}")
        try:
            return cls(**{k: v for k, v in setup.fields.items() if k != "v"})
        except (TypeError, ValueError) as exc:
            raise WireFormatError(f"bad token stream setup: {exc}") from None


@dataclass
class TokenDescription:
    """One description: ``slots int64 [n]`` sorted, ``tokens float32 [n, D]`` in slot
    order, ``cls float32 [D]`` or None; ``kept`` (union mode) all kept patch positions
    (``int64``, sorted); ``extras`` the transmission's position-less token count;
    ``hw`` the original image size (None: the setup's usual size)."""

    index: int
    slots: np.ndarray
    tokens: np.ndarray
    cls: np.ndarray | None = None
    kept: np.ndarray | None = None
    extras: int = 0
    hw: tuple[int, int] | None = None

    def envelope(self, stream: TokenStream) -> Envelope:
        h, w = self.hw if self.hw is not None else stream.hw
        return Envelope("tokens", self.index, stream.descriptions, h, w)


def expected_own_patches(stream: TokenStream, index: int) -> int | None:
    """Patch tokens an interleaved ``own`` description carries with the fixed budget."""
    if stream.budget is None or stream.extras is None:
        return None
    k, E, D = stream.budget, stream.extras, stream.descriptions
    if stream.assignment != "interleave" or stream.redundancy:
        return None
    return sum(1 for i in range(index, k + E, D) if i < k)


def _check_agreed(what: str, want: str | None, have, key: str) -> None:
    """The file the stream names by its short hash ``want`` (None: the stream uses none)
    against this end's ``have`` (an object with ``.hash``, or None)."""
    if want is None:
        return
    if have is None:
        raise WireFormatError(
            f"the stream uses {what} {want} and this end has none configured ({key})"
        )
    if short_hash(have.hash) != want:
        raise WireFormatError(
            f"{what} mismatch: the stream uses {want}, this end has {short_hash(have.hash)}"
        )


class TokenWire(Stage):
    """One token description of a stream (see the module docstring).

    :param stream: the agreed settings (:class:`TokenStream`, from the setup)
    :param codebook: the codebook (VQ, the calibrated scalar range), hash-checked
    :param prior: the token prior (positions model, residual base), hash-checked
    :input x: :class:`TokenDescription`
    :output: :class:`TokenDescription`

    >>> st = TokenStream(model="m", grid=(2, 2), dim=1, budget=1, hw=(16, 16))
    >>> x = TokenDescription(0, slots=np.array([3]), tokens=np.ones((1, 1), np.float32))
    >>> p = TokenWire(st).encode(x); p.ledger.by_stage()   # header, positions, a float16 value
    {'envelope': 1, 'tokens': 1, 'positions': 5, 'quant': 16, 'pad': 1}
    >>> TokenWire(st).decode(p.data).slots.tolist()
    [3]
    """

    name = "tokens"
    what = "token description"

    def __init__(self, stream: TokenStream, *, codebook=None, prior=None):
        self.stream = stream
        _check_agreed("codebook", stream.codebook, codebook, "edge.quant.codebook")
        _check_agreed("token prior", stream.prior, prior, "edge.quant.prior")
        if stream.prior is not None:
            if tuple(prior.grid) != tuple(stream.grid) or prior.dim != stream.dim:
                raise WireFormatError(
                    f"token prior is for a {prior.grid} grid of {prior.dim}-d tokens, the "
                    f"stream has {stream.grid} and {stream.dim}"
                )
        self.codebook = codebook if stream.codebook is not None else None
        self.prior = prior if stream.prior is not None else None
        if (
            self.codebook is not None
            and self.codebook.residual == "position"
            and (self.prior is None)
        ):
            raise WireFormatError("a position-residual codebook needs the token prior")
        self.quantizer = self._quantizer()
        self.envelope = StreamEnvelope("tokens", stream.descriptions, stream.hw)
        self.mdc = MDC(stream.descriptions, stream.assignment, redundancy=stream.redundancy)

    def _quantizer(self) -> Quantizer:
        st = self.stream
        if st.quant == "none":
            if st.entropy:
                raise WireFormatError("float16 tokens cannot be entropy-coded")
            return Fp16Quantizer()
        if st.quant == "scalar":
            if st.scalar_range == "calibrated":
                src = self.prior if self.prior is not None else self.codebook
                if src is None:
                    raise WireFormatError("the calibrated scalar range needs a prior or codebook")
                return ScalarQuantizer(st.bits, src.lo, src.hi, entropy=st.entropy)
            return ScalarQuantizer(st.bits, entropy=st.entropy)
        if self.codebook is None:
            raise WireFormatError("a codebook stream names no codebook")
        if self.codebook.bits != st.bits or self.codebook.metric != st.metric:
            raise WireFormatError(
                f"codebook mismatch: the stream has {st.bits}-bit {st.metric} indices, the "
                f"codebook is {self.codebook.bits}-bit {self.codebook.metric}"
            )
        return VQQuantizer(self.codebook, entropy=st.entropy)

    # -- pieces ---------------------------------------------------------------------------
    def _base(self, slots, cls: bool):
        if self.codebook is None or self.codebook.residual != "position":
            return None
        return self.prior.base(slots, cls=cls)

    def _count_field(self, w: BitWriter | None, r: BitReader | None, n, expected):
        """Write (``w``) or read (``r``) a count in ``[0, P]`` against ``expected``."""
        P = self.stream.num_patches
        s, c = self.name, "header"
        nb = count_bits(P)
        if w is not None:
            if expected is not None:
                w.write(int(n != expected), 1, s, c)
                if n == expected:
                    return n
            w.write(n, nb, s, c)
            return n
        if expected is not None and not r.read(1, "count flag"):
            return expected
        n = r.read(nb, "token count")
        if n > P:
            raise WireFormatError(f"{n} tokens do not fit {P} patch positions")
        return n

    # -- write -----------------------------------------------------------------------------
    def write(self, w: BitWriter, x: TokenDescription, /) -> int:
        st = self.stream
        P = st.num_patches
        slots = np.asarray(x.slots, np.int64)
        tokens = np.asarray(x.tokens, np.float32)
        if len(slots) != len(tokens):
            raise ValueError("one token per slot")
        if len(slots) and np.any(np.diff(slots) <= 0):
            raise ValueError("slots must be sorted and distinct")
        if len(tokens) and tokens.shape[1] != st.dim:
            raise ValueError(f"tokens have {tokens.shape[1]} channels, not {st.dim}")
        with_cls = st.carries_cls(x.index)
        if (x.cls is not None) != with_cls:
            raise ValueError(f"description {x.index} must {'' if with_cls else 'not '}carry CLS")
        E = x.extras
        if st.extras is not None and E != st.extras:
            raise ValueError(f"{E} extra tokens, the stream fixes {st.extras}")
        if not 0 <= E <= MAX_EXTRAS:
            raise ValueError(f"at most {MAX_EXTRAS} extra tokens, got {E}")
        start = w.nbits
        self.envelope.write(w, x.envelope(st))
        patches = slots[slots < P]
        if st.union:
            kept = np.asarray(x.kept, np.int64)
            self._count_field(w, None, len(kept), st.budget)
            mapped = kept
        else:
            self._count_field(w, None, len(patches), expected_own_patches(st, x.index))
            mapped = patches
        if st.extras is None:
            w.write(E, 8, self.name, "header")
        if st.union:
            universe = np.concatenate([kept, P + np.arange(E)])
            share = np.searchsorted(universe, slots)
            if len(slots) and not np.array_equal(
                universe[np.minimum(share, len(universe) - 1)], slots
            ):
                raise ValueError("description slots must be kept slots")
            implied = self.mdc.split(len(universe))[x.index]
            if st.assignment == "interleave" and not st.redundancy:
                if sorted(implied) != share.tolist():
                    raise ValueError("an interleaved description carries its implied share")
            else:
                self.mdc.write(w, share, n=len(universe))
        elif E:
            POSITIONS.write(w, slots[slots >= P] - P, n=E)
        if self.prior is None:
            POSITIONS.write(w, mapped, n=P)
        values = tokens if x.cls is None else np.concatenate([x.cls[None, :], tokens], 0)
        q = self.quantizer
        state = q.side(values) if q.entropy else None
        if q.entropy:
            q.write_side(w, state)
        base = self._base(slots, with_cls)
        if not q.entropy:
            if base is not None:
                q.write(w, values, base=base)
            else:
                q.write(w, values)
        if self.prior is not None or q.entropy:
            enc = ec.ArithmeticEncoder()
            if self.prior is not None:
                self.prior.position_model(len(mapped)).write(enc, mapped, n=len(mapped))
            if q.entropy:
                q.code(enc, values, state, base=base)
            code = enc.finish(offset=w.nbits, multiple=8)
            pos_bits = min(len(code), int(round(enc.ideal_bits.get("positions", 0.0))))
            if pos_bits:
                w.write_bits(code[:pos_bits], "positions", "side_info")
            if len(code) > pos_bits:
                w.write_bits(code[pos_bits:], "quant", "payload")
        return w.nbits - start

    # -- read ------------------------------------------------------------------------------
    def read(self, r: BitReader, /) -> TokenDescription:
        st = self.stream
        P = st.num_patches
        env = self.envelope.read(r)
        with_cls = st.carries_cls(env.index)
        kept = None
        if st.union:
            k = self._count_field(None, r, None, st.budget)
        else:
            n_p = self._count_field(None, r, None, expected_own_patches(st, env.index))
        E = st.extras if st.extras is not None else r.read(8, "extras")
        own_extras = np.zeros(0, np.int64)
        share = None
        if st.union:
            universe_n = k + E
            if st.assignment == "interleave" and not st.redundancy:
                share = np.asarray(sorted(self.mdc.split(universe_n)[env.index]), np.int64)
            else:
                share = self.mdc.read(r, n=universe_n)
        elif E:
            own_extras = POSITIONS.read(r, n=E)
        mapped = None
        if self.prior is None:
            mapped = POSITIONS.read(r, n=P)
            if len(mapped) != (k if st.union else n_p):
                raise WireFormatError(
                    f"{len(mapped)} positions, the header says {k if st.union else n_p}"
                )
        if st.union:
            n_values = len(share)
        else:
            n_values = n_p + len(own_extras)
        n_values += int(with_cls)
        q = self.quantizer
        state = q.read_side(r, dim=st.dim) if q.entropy else None
        raw = None
        if not q.entropy:
            raw = _RawValues(q, r, n_values, st.dim)
        dec = ec.ArithmeticDecoder(r.rest()) if (self.prior is not None or q.entropy) else None
        if self.prior is not None:
            n_map = k if st.union else n_p
            mapped = self.prior.position_model(n_map).read(dec, n=n_map)
        if st.union:
            kept = mapped
            universe = np.concatenate([kept, P + np.arange(E)])
            if len(share) and share.max() >= len(universe):
                raise WireFormatError("description share is outside the kept set")
            slots = universe[share]
        else:
            slots = np.concatenate([mapped, P + own_extras])
        base = self._base(slots, with_cls)
        if q.entropy:
            values = q.uncode(dec, n=n_values, dim=st.dim, state=state, base=base)
        else:
            values = raw.values(base)
        cls = values[0] if with_cls else None
        return TokenDescription(
            env.index,
            slots,
            values[int(with_cls) :],
            cls,
            kept,
            E,
            (env.height, env.width),
        )


class _RawValues:
    """Fixed-width values read before the positions that place them (their residual
    base depends on the slots, decoded after)."""

    def __init__(self, quantizer, r: BitReader, n: int, dim: int):
        self.q, self.n, self.dim = quantizer, n, dim
        if isinstance(quantizer, VQQuantizer):
            S = quantizer.codebook.stages
            self.idx = r.read_array(n * S, quantizer.codebook.bits, "codebook indices").reshape(
                n, S
            )
            quantizer._check(self.idx, dim)
            self.values_now = None
        else:
            self.values_now = quantizer.read(r, n=n, dim=dim)

    def values(self, base) -> np.ndarray:
        if self.values_now is not None:
            return self.values_now
        return self.q.codebook.reconstruct(self.idx, base)
