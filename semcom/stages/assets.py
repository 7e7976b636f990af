"""The token path's agreed files, loaded and checked against a model: the codebook and
the token prior. Both ends load them from their own configuration (``edge.quant``); the
stream setup carries their hashes, so an edge and a cloud with different files refuse
each other with a clear error instead of decoding garbage.

>>> from semcom.config import load_config
>>> cfg = load_config(None, ["edge.model.name=llava", "edge.quant.type=codebook",
...                          "edge.quant.bits=6"])
>>> a = load_token_assets(cfg)
>>> a.codebook.residual, a.codebook.bits, a.prior.grid, a.codebook.meta["prior"] == a.prior.hash[:16]
('position', 6, (12, 12), True)
"""

from __future__ import annotations

from dataclasses import dataclass

from semcom.errors import ConfigError
from semcom.stages.codebook import Codebook, CodebookError, load_cached, quant_codebook_path
from semcom.stages.prior import PriorError, TokenPrior, check_prior, prior_path
from semcom.stages.prior import load_cached as load_prior


@dataclass
class TokenAssets:
    """``codebook`` (None unless the quantiser needs one) and ``prior`` (None when
    ``edge.quant.prior`` resolves to none)."""

    codebook: Codebook | None
    prior: TokenPrior | None


def codebook_path(cfg):
    """The codebook file of ``edge.quant`` (explicit path or the shipped default)."""
    return quant_codebook_path(cfg.edge.quant, cfg.edge.model.name)


def load_codebook(cfg, backend=None) -> Codebook:
    """The configured codebook, checked against ``edge.quant`` and the model (dimension,
    model id); a :class:`~semcom.errors.ConfigError` naming the key otherwise."""
    path = codebook_path(cfg)
    try:
        cb = load_cached(path)
    except CodebookError as exc:
        raise ConfigError("edge.quant.codebook", str(exc)) from None
    q = cfg.edge.quant
    bits = q.bits_for(cfg.edge.model.name)
    if q.type == "codebook" and (cb.bits != bits or cb.size != 2**bits):
        raise ConfigError("edge.quant.bits", f"{path} has {cb.size} entries, not 2^{bits}")
    if q.type == "codebook" and cb.metric != q.metric:
        raise ConfigError(
            "edge.quant.metric", f"{path} was trained for metric '{cb.metric}', not '{q.metric}'"
        )
    if backend is not None:
        if cb.dim != backend.token_dim:
            raise ConfigError(
                "edge.quant.codebook",
                f"{path} has {cb.dim}-d entries, the model's tokens are {backend.token_dim}-d",
            )
        want = cb.meta.get("model_id")
        if want and want != backend.model_id:
            raise ConfigError(
                "edge.quant.codebook",
                f"{path} was trained on model {want}, this end runs {backend.model_id}",
            )
    return cb


def load_token_assets(cfg, backend=None) -> TokenAssets:
    """The codebook and prior ``cfg.edge.quant`` names, checked against each other and
    against the model of ``backend``."""
    q = cfg.edge.quant
    prior = None
    ppath = prior_path(q, cfg.edge.model.name)
    if ppath is not None:
        try:
            prior = load_prior(ppath)
        except PriorError as exc:
            raise ConfigError("edge.quant.prior", str(exc)) from None
        if backend is not None:
            try:
                check_prior(prior, backend)
            except ConfigError:
                if str(q.prior or "auto") != "auto":
                    raise
                prior = None  # auto: the shipped prior is another model's
    needs_codebook = q.type == "codebook" or (
        q.type == "scalar" and q.scalar_range == "calibrated" and prior is None
    )
    codebook = load_codebook(cfg, backend) if needs_codebook else None
    if codebook is not None and codebook.residual == "position":
        if prior is None:
            raise ConfigError(
                "edge.quant.prior",
                f"{codebook_path(cfg)} is a position-residual codebook: it needs its token "
                "prior (edge.quant.prior: auto finds the shipped one; none is not possible)",
            )
        want = codebook.meta.get("prior")
        if want and want != prior.hash[:16]:
            raise ConfigError(
                "edge.quant.prior",
                f"{codebook_path(cfg)} was trained against token prior {want}, "
                f"{ppath} is {prior.hash[:16]}",
            )
    return TokenAssets(codebook, prior)
