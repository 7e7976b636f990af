"""The stage contract: every reversible step of a description is one :class:`Stage`.

A stage is one class with its two halves side by side (CompressAI's ``compress`` /
``decompress``, Sionna's blocks with their shapes in the docstring), so the edge and the
cloud cannot drift apart:

- :meth:`Stage.write` (edge) writes the stage's fields into a
  :class:`~semcom.stages.bits.BitWriter`, each booked in the writer's ledger under the
  stage's :attr:`~Stage.name` and a category (``payload``, ``side_info``, ``header``),
  and returns the bits it wrote;
- :meth:`Stage.read` (cloud) reads them back from a :class:`~semcom.stages.bits.BitReader`
  and returns what ``write`` was given (up to quantisation).

Both take the same keyword *context*: what the two ends know without reading it from the
stream, i.e. shapes (token count, dimension, image size) and agreed settings. Settings
fixed for a connection (quantiser bits, codebook, codec weights, the cloud's model id)
go to the constructor; per-call shapes are keywords of ``write`` / ``read``. A
description is several stages writing one after another into one writer (envelope,
header, positions, quantised values), read back in the same order. Byte-level codecs
(JPEG / WebP, the neural codec) write their bytes with
:meth:`~semcom.stages.bits.BitWriter.write_bytes` and read the rest of the stream.

Two byte-level helpers come with every stage:

- :meth:`Stage.encode` - ``x`` -> :class:`~semcom.types.Payload` (a fresh writer, zero
  padding to a byte booked as ``("pad", "header")``), so
  ``payload.ledger.total() == 8 * len(payload.data)`` by construction; ``payload.meta``
  holds what the stage put in :attr:`BitWriter.meta <semcom.stages.bits.BitWriter.meta>`
  (by-products not on the wire, e.g. a codec's estimated bits);
- :meth:`Stage.decode` - bytes (or a Payload) -> ``x``, then a check that only zero
  padding is left.

Docstrings state inputs and outputs with shapes and dtypes (``:input x:``,
``:output:``) and carry a runnable example; ``tests/test_doctests.py`` runs them.

>>> from semcom.stages.bits import BitReader, BitWriter
>>> class Level(Stage):
...     '''A level in [0, 255].
...
...     :input x: ``int``; :output: ``int``, 8 bits (payload)
...     '''
...     name = "level"
...     def write(self, w, x, /):
...         w.write(x, 8, self.name, "payload")
...         return 8
...     def read(self, r, /):
...         return r.read(8, "level")
>>> p = Level().encode(200)
>>> p.data, p.ledger.total(), Level().decode(p.data)
(b'\\xc8', 8, 200)
>>> w = BitWriter(); _ = Level().write(w, 3); _ = Level().write(w, 4)
>>> r = BitReader(w.to_bytes()); Level().read(r), Level().read(r)
(3, 4)
"""

from __future__ import annotations

import abc
from typing import Any

from semcom.stages.bits import BitReader, BitWriter
from semcom.types import Payload


class Stage(abc.ABC):
    """A reversible step: :meth:`write` on the edge, :meth:`read` on the cloud.

    Subclasses set :attr:`name` (the ledger name of the fields they write) and
    :attr:`what` (how errors name the bytes), implement :meth:`write` and :meth:`read`,
    and document their inputs and outputs with shapes and dtypes and an example.
    """

    #: ledger name the stage books its fields under
    name: str = ""
    #: what decode errors call the bytes ("token description truncated: ...")
    what: str = "description"

    @abc.abstractmethod
    def write(self, w: BitWriter, x: Any, /, **context: Any) -> int:
        """Edge: write ``x`` into ``w`` (every field booked under :attr:`name`); return
        the number of bits written."""

    @abc.abstractmethod
    def read(self, r: BitReader, /, **context: Any) -> Any:
        """Cloud: read what :meth:`write` wrote, given the same context. Malformed or
        inconsistent input raises :class:`~semcom.errors.WireFormatError` naming it."""

    def encode(self, x: Any, /, **context: Any) -> Payload:
        """``x`` as bytes: :meth:`write` into a fresh writer, padded to a whole byte."""
        w = BitWriter()
        self.write(w, x, **context)
        data = w.to_bytes()
        return Payload(data=data, ledger=w.ledger, meta=w.meta)

    def decode(self, data: bytes | Payload, /, **context: Any) -> Any:
        """The inverse of :meth:`encode`: :meth:`read`, then only zero padding may be left."""
        if isinstance(data, Payload):
            data = data.data
        r = BitReader(bytes(data), what=self.what)
        out = self.read(r, **context)
        r.end()
        return out
