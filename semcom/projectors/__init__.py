"""Learned token compressors for LLaVA: TokenPacker and VisualPrism.

- :mod:`semcom.projectors.modules` - the torch modules (compressors, projector MLP,
  :class:`~semcom.projectors.modules.LearnedProjector` with the edge/cloud split,
  VisualPrism's Sinkhorn regulariser);
- :mod:`semcom.projectors.io` - weight files (``semcom/assets/projectors/``), loading
  and checks, the compressor's inputs from the vision tower;
- :mod:`semcom.projectors.wire` - the description format of compressed tokens;
- :mod:`semcom.projectors.lm` - already-projected embeddings into the language model.

The split: the edge runs the vision tower and the compressor up to the ``(g/s)^2``
compressed tokens of the vision width (the narrowest point), quantises and MDC-codes
them (``edge.method: projector``); the cloud dequantises and runs the projector MLP
into the language model. Importing this package imports no torch.
"""
