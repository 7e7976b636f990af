"""Neural image codecs (CompressAI 1.2.8) as a reversible stage with real bitstreams.

Architectures (``edge.image.codec``), all built from CompressAI's classes and layers at
tiny width (N, M <= 64/96 so they train on a CPU and their weights stay small):

===============  ========================================  ===========================
``factorized``   Balle et al. 2017 (``bmshj2018-factorized``)  y: factorized prior
``hyperprior``   Balle et al. 2018 (``bmshj2018-hyperprior``)  y: zero-mean Gaussian, scales from z
``mean-scale``   Minnen et al. 2018 (``mbt2018-mean``)         y: Gaussian, means+scales from z
``elic``         He et al. 2022 (``elic2022-official``)        uneven channel groups + checkerboard
===============  ========================================  ===========================

Tiny-image adaptation: the zoo hyper transforms downsample y by 4 (total factor 64), so a
96 x 96 image (y: 6 x 6) would need padding to 128 x 128. Here ``h_a``/``h_s`` have one
stride-2 stage (total factor 32, 96 = 3 * 32): y is 6 x 6 and z is 3 x 3 with no padding.
Other sizes are replicate-padded to a multiple of the factor; rates always count the
original H x W.

The package:

- :mod:`~semcom.stages.codec.arch` - the architectures (:func:`build_model`, the tiny
  hyper transforms and ELIC), padding and tensor helpers;
- :mod:`~semcom.stages.codec.gained` - the variable-rate codec (:class:`GainedCodec`:
  one model, K rate points by learned channel gains); imports torch, so import it lazily;
- :mod:`~semcom.stages.codec.weights` - trained codecs on disk: the manifest
  (:class:`CodecSpec`), saving and loading weights, :func:`load_codec`;
- :mod:`~semcom.stages.codec.stage` - the wire body and the stage (:class:`CodecHeader`,
  :class:`NeuralCodec`), with the deterministic entropy-coding numerics.
"""
