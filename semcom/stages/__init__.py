"""Reversible stages, each a :class:`semcom.stage.Stage`: ``write`` into a bit writer on
the edge, ``read`` from a bit reader on the cloud, side by side in one class.

- :mod:`~semcom.stages.bits` - :class:`BitWriter` / :class:`BitReader`, the ledger built in;
- :mod:`~semcom.stages.envelope` - :data:`ENVELOPE`, the first bytes of every description;
- :mod:`~semcom.stages.positions` - :data:`POSITIONS`, a subset of ``{0..n-1}``;
- :mod:`~semcom.stages.mdc` - :class:`MDC`, multiple descriptions (split, share, combine);
- :mod:`~semcom.stages.quant` - token quantisers (float16, scalar, codebook VQ);
- :mod:`~semcom.stages.tokens` - :class:`TokenWire`, the token description;
- :mod:`~semcom.stages.image` - :class:`PillowCodec` (JPEG / WebP);
- :mod:`~semcom.stages.codec` - the neural codecs (:class:`NeuralCodec`);
- :mod:`~semcom.stages.entropy`, :mod:`~semcom.stages.codebook` - the arithmetic coder and
  the VQ codebooks the quantisers use.

The projector description (:class:`semcom.projectors.wire.ProjectorWire`) is a stage too.
"""
