"""5G NR LDPC codes (TS 38.212 Sec. 5.2.2, 5.3.2, 5.4.2), in numpy.

- :func:`select_base_graph` and :func:`lifting_size`: the standard's rules for the base
  graph (from the payload ``A`` and the code rate) and the lifting size ``Z_c``.
- :class:`LdpcCode`: one code (base graph, ``Z_c``, ``K'`` info bits incl. CRC): the
  lifted parity-check structure, a systematic encoder that solves the dual-diagonal core
  and the single-parity extension row by row, the parity-check test, and rate matching
  (bit selection from the circular buffer with redundancy versions, filler bits skipped,
  and the bit interleaver of 5.4.2.2) as index maps into the mother codeword.

The base-graph shift tables are the 3GPP tables shipped with Sionna (read as a data file,
without importing Sionna or torch). Tests check the encoder bit-exactly against Sionna's
``LDPC5GEncoder``.

Conventions: a codeword is the full mother codeword ``c`` of length ``N = n_cols * Z``
(``n_cols`` = 68 for BG1, 52 for BG2) with the ``K - K'`` filler bits (zeros) at
``[K', K)``. LLRs are ``log P(b=0) / P(b=1)`` (positive means 0).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from semcom.linkmodel.segmentation import K_CB, K_MIN, select_base_graph

__all__ = ["K_CB", "K_MIN", "LdpcCode", "lifting_size", "select_base_graph"]

# Table 5.3.2-1: sets of lifting sizes, by set index i_LS
LIFTING_SETS: tuple[tuple[int, ...], ...] = (
    (2, 4, 8, 16, 32, 64, 128, 256),
    (3, 6, 12, 24, 48, 96, 192, 384),
    (5, 10, 20, 40, 80, 160, 320),
    (7, 14, 28, 56, 112, 224),
    (9, 18, 36, 72, 144, 288),
    (11, 22, 44, 88, 176, 352),
    (13, 26, 52, 104, 208),
    (15, 30, 60, 120, 240),
)
INFO_COLS = {1: 22, 2: 10}  # systematic columns of the base matrix
N_COLS = {1: 68, 2: 52}  # columns of the base matrix
N_ROWS = {1: 46, 2: 42}  # rows of the base matrix
RV_COEF = {1: (0, 17, 33, 56), 2: (0, 13, 25, 43)}  # Table 5.4.2.1-2 numerators
RV_DENOM = {1: 66, 2: 50}


def lifting_size(k_prime: int, bg: int, b: int | None = None) -> tuple[int, int]:
    """``(Z_c, i_LS)``: the smallest lifting size with ``K_b * Z_c >= K'`` (5.2.2).

    ``b`` is the segmentation input ``B`` (TB payload + TB CRC) that sets ``K_b`` for
    BG2; it defaults to ``k_prime`` (one code block).

    >>> lifting_size(1024, 2), lifting_size(8448, 1)
    ((104, 6), (384, 1))
    """
    b = k_prime if b is None else b
    if bg == 1:
        kb = 22
    else:
        kb = 10 if b > 640 else 9 if b > 560 else 8 if b > 192 else 6
    best = None
    for i_ls, sizes in enumerate(LIFTING_SETS):
        for z in sizes:
            if kb * z >= k_prime and (best is None or z < best[0]):
                best = (z, i_ls)
    if best is None:
        raise ValueError(f"K'={k_prime} is too large for base graph {bg}")
    return best


def _table_path(bg: int) -> Path:
    spec = importlib.util.find_spec("sionna")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the 5G NR base graph tables come from the 'sionna-no-rt' package, "
            "which is not installed"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "phy/fec/ldpc/codes" / f"5G_bg{bg}.csv"


@cache
def _base_table(bg: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, V[:, 8])``: the nonzero entries of base graph ``bg`` (Table 5.3.2-2/3)."""
    rows, cols, vals = [], [], []
    row = -1
    for line in _table_path(bg).read_text().splitlines()[2:]:
        parts = line.split(";")
        if len(parts) < 10 or not parts[1].strip():
            continue
        if parts[0].strip():
            row = int(parts[0])
        rows.append(row)
        cols.append(int(parts[1]))
        vals.append([int(v) for v in parts[2:10]])
    return np.array(rows), np.array(cols), np.array(vals)


@dataclass(frozen=True, eq=False)
class LdpcCode:
    """One 5G NR LDPC code: ``bg`` (1/2), lifting ``z`` (set ``i_ls``), ``k_prime`` bits.

    Attributes (all derived): ``k`` = ``K`` (``22 Z`` or ``10 Z``, filler included),
    ``n`` = ``N`` mother codeword length, ``n_cb`` circular buffer length ``N - 2Z``,
    ``rows``/``cols``/``shifts``: base-matrix entries sorted by row (shift = ``V mod Z``).

    >>> code = LdpcCode.for_block(1024, 0.5)
    >>> (code.bg, code.z, code.k, code.n, code.k_prime)
    (2, 104, 1040, 5408, 1024)
    >>> u = np.random.default_rng(0).integers(0, 2, (3, 1024), dtype=np.uint8)
    >>> bool(code.check(code.encode(u)).all())
    True
    """

    bg: int
    z: int
    i_ls: int
    k_prime: int
    rows: np.ndarray = field(repr=False)
    cols: np.ndarray = field(repr=False)
    shifts: np.ndarray = field(repr=False)

    @classmethod
    def build(cls, bg: int, k_prime: int, b: int | None = None) -> LdpcCode:
        return _build(bg, k_prime, b)

    @classmethod
    def for_block(cls, k_prime: int, code_rate: float, bg: int | None = None) -> LdpcCode:
        """The code of one code block of ``K'`` bits (payload ``A = K'``) at rate ``R``."""
        bg = select_base_graph(k_prime, code_rate) if bg is None else bg
        return _build(bg, k_prime, None)

    # ---- sizes -------------------------------------------------------------------------
    @property
    def n_cols(self) -> int:
        return N_COLS[self.bg]

    @property
    def n_rows(self) -> int:
        return N_ROWS[self.bg]

    @property
    def info_cols(self) -> int:
        return INFO_COLS[self.bg]

    @property
    def k(self) -> int:
        return self.info_cols * self.z

    @property
    def n(self) -> int:
        return self.n_cols * self.z

    @property
    def n_cb(self) -> int:
        return self.n - 2 * self.z

    @property
    def filler(self) -> int:
        return self.k - self.k_prime

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.bg, self.z, self.k_prime)

    def ext_col(self, row: int) -> int:
        """The degree-1 parity column of extension row ``row`` (>= 4)."""
        return self.info_cols + row

    # ---- encoding ----------------------------------------------------------------------
    def encode(self, u: np.ndarray, upto_col: int | None = None) -> np.ndarray:
        """Systematic encoding.

        :input u: [B, k_prime], uint8 information bits (incl. CRC).
        :input upto_col: compute parity only for base columns below this one (the
            extension columns from it on stay zero): enough when rate matching reads no
            further (the link passes the last column its redundancy versions read).
        :output c: [B, n], uint8 mother codeword; ``c[:, :k_prime] == u``, zeros (filler)
            at ``[k_prime, k)``, then ``n - k`` parity bits with ``H c = 0``.
        """
        u = np.asarray(u, dtype=np.uint8)
        if u.ndim != 2 or u.shape[1] != self.k_prime:
            raise ValueError(f"expected bits of shape [B, {self.k_prime}], got {u.shape}")
        B, Z = u.shape[0], self.z
        x = np.zeros((B, self.n_cols, Z), np.uint8)
        x.reshape(B, -1)[:, : self.k_prime] = u
        kb = self.info_cols
        rows, cols, sh = self.rows, self.cols, self.shifts

        def xor_rot(acc, v, s):  # acc ^= P_s v, where (P_s v)[j] = v[(j + s) % Z]
            s = int(s)
            acc[:, : Z - s] ^= v[:, s:]
            if s:
                acc[:, Z - s :] ^= v[:, :s]

        def unrot(v, s):  # P_s^{-1} v
            s = int(s)
            out = np.empty((B, Z), np.uint8)
            out[:, s:] = v[:, : Z - s]
            out[:, :s] = v[:, Z - s :]
            return out

        # lambda_i: contribution of the systematic columns to each core row i = 0..3
        lam = np.zeros((4, B, Z), np.uint8)
        for e in np.flatnonzero((rows < 4) & (cols < kb)):
            xor_rot(lam[rows[e]], x[:, cols[e]], sh[e])
        # core parity columns kb..kb+3: the sum of the 4 core rows leaves P_B p0
        core = [
            (rows[e], cols[e] - kb, sh[e])
            for e in np.flatnonzero((rows < 4) & (cols >= kb) & (cols < kb + 4))
        ]
        count: dict[tuple[int, int], int] = {}
        for _, c, s in core:
            count[(c, s)] = count.get((c, s), 0) + 1
        odd = [(c, s) for (c, s), m in count.items() if m % 2]
        if len(odd) != 1 or odd[0][0] != 0:  # pragma: no cover - a table error
            raise AssertionError("unexpected core structure of the base graph")
        known = {0: unrot(np.bitwise_xor.reduce(lam, axis=0), odd[0][1])}
        while len(known) < 4:
            progress = False
            for r in range(4):
                entries = [(c, s) for rr, c, s in core if rr == r]
                unknown = [(c, s) for c, s in entries if c not in known]
                if len(unknown) != 1:
                    continue
                acc = lam[r].copy()
                for c, s in entries:
                    if c in known:
                        xor_rot(acc, known[c], s)
                known[unknown[0][0]] = unrot(acc, unknown[0][1])
                progress = True
            if not progress:  # pragma: no cover
                raise AssertionError("cannot solve the core parity")
        for c in range(4):
            x[:, kb + c] = known[c]
        # extension rows: one degree-1 parity column each, in row order
        start = np.searchsorted(rows, 4)
        for r in range(4, self.n_rows):
            ext = self.ext_col(r)
            if upto_col is not None and ext >= upto_col:
                break  # never transmitted
            acc = np.zeros((B, Z), np.uint8)
            lo, hi = np.searchsorted(rows, r), np.searchsorted(rows, r + 1)
            s_ext = 0
            for e in range(max(lo, start), hi):
                if cols[e] == ext:
                    s_ext = sh[e]
                else:
                    xor_rot(acc, x[:, cols[e]], sh[e])
            x[:, ext] = unrot(acc, s_ext)
        return x.reshape(B, -1)

    def check(self, c: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Parity checks.

        :input c: [B, n] uint8 codewords (hard decisions).
        :input rows: optional base rows to check (default all).
        :output ok: [B] bool, True where every checked parity holds.
        """
        c = np.asarray(c, dtype=np.uint8)
        B, Z = c.shape[0], self.z
        x = c.reshape(B, self.n_cols, Z)
        perm = _perms(Z)
        ok = np.ones(B, bool)
        for r in range(self.n_rows) if rows is None else rows:
            acc = np.zeros((B, Z), np.uint8)
            lo, hi = np.searchsorted(self.rows, r), np.searchsorted(self.rows, r + 1)
            for e in range(lo, hi):
                acc ^= x[:, self.cols[e]][:, perm[self.shifts[e]]]
            ok &= ~acc.any(axis=1)
        return ok

    def pcm(self, rows: np.ndarray | None = None):
        """The lifted parity-check matrix (scipy.sparse CSR, ``[len(rows) * Z, n]``)."""
        import scipy.sparse as sp

        rows = np.arange(self.n_rows) if rows is None else np.asarray(rows)
        Z = self.z
        sel = np.isin(self.rows, rows)
        pos = {int(r): i for i, r in enumerate(rows)}
        rr = np.array([pos[int(r)] for r in self.rows[sel]])
        j = np.arange(Z)
        r_idx = (rr[:, None] * Z + j).ravel()
        c_idx = (self.cols[sel][:, None] * Z + (j + self.shifts[sel][:, None]) % Z).ravel()
        return sp.csr_matrix(
            (np.ones(r_idx.size, np.uint8), (r_idx, c_idx)), shape=(len(rows) * Z, self.n)
        )

    # ---- rate matching -----------------------------------------------------------------
    def k0(self, rv: int) -> int:
        """Start of redundancy version ``rv`` in the circular buffer (Table 5.4.2.1-2)."""
        if rv not in (0, 1, 2, 3):
            raise ValueError(f"redundancy version must be 0..3, got {rv}")
        num = RV_COEF[self.bg][rv]
        return (num * self.n_cb // (RV_DENOM[self.bg] * self.z)) * self.z

    def rm_indices(self, e: int, rv: int = 0, qm: int = 1) -> np.ndarray:
        """Rate matching as an index map into the mother codeword.

        ``f = c[:, idx]`` is the output of bit selection (5.4.2.1: ``E`` bits read from the
        circular buffer ``d = c[2Z:]`` from ``k0(rv)`` on, cyclically, filler skipped) and
        bit interleaving (5.4.2.2, ``Q_m`` bits per symbol).

        :output idx: [e] int64 indices in ``[0, n)``; repeated when ``e`` exceeds the buffer.
        """
        return _rm_indices(self, int(e), int(rv), int(qm)).copy()

    def covered_cols(self, idx: np.ndarray) -> np.ndarray:
        """[n_cols] bool: base columns with at least one transmitted bit."""
        cov = np.zeros(self.n_cols, bool)
        cov[np.unique(np.asarray(idx) // self.z)] = True
        return cov

    def active_rows(self, covered: np.ndarray) -> np.ndarray:
        """Base rows the decoder needs: the 4 core rows, and each extension row whose
        degree-1 parity column was (at least partly) transmitted. The other rows only
        involve an unknown punctured parity bit and carry no information."""
        return np.array(
            [r for r in range(self.n_rows) if r < 4 or covered[self.ext_col(r)]], dtype=np.int64
        )


@lru_cache(maxsize=512)
def _build(bg: int, k_prime: int, b: int | None) -> LdpcCode:
    if bg not in (1, 2):
        raise ValueError(f"base graph must be 1 or 2, got {bg}")
    if not K_MIN <= k_prime <= K_CB[bg]:
        raise ValueError(f"K'={k_prime} is out of range for base graph {bg} ({K_MIN}..{K_CB[bg]})")
    z, i_ls = lifting_size(k_prime, bg, b)
    rows, cols, vals = _base_table(bg)
    order = np.lexsort((cols, rows))
    shifts = vals[order, i_ls] % z
    return LdpcCode(
        bg,
        z,
        i_ls,
        k_prime,
        rows[order].astype(np.int64),
        cols[order].astype(np.int64),
        shifts.astype(np.int64),
    )


@lru_cache(maxsize=64)
def _perms(z: int) -> np.ndarray:
    """[z, z]: row s is the gather index of the circulant shift P_s."""
    j = np.arange(z)
    return (j[None, :] + j[:, None]) % z


@lru_cache(maxsize=4096)
def _rm_indices(code: LdpcCode, e: int, rv: int, qm: int) -> np.ndarray:
    if e <= 0 or e % qm:
        raise ValueError(f"E={e} must be a positive multiple of Q_m={qm}")
    n_cb, z = code.n_cb, code.z
    d = (code.k0(rv) + np.arange(n_cb)) % n_cb
    fill_lo, fill_hi = code.k_prime - 2 * z, code.k - 2 * z
    d = d[(d < fill_lo) | (d >= fill_hi)]  # filler bits are never sent
    sel = np.resize(d, e) + 2 * z  # cyclic repetition past the buffer
    # bit interleaver 5.4.2.2: f[i + j*Qm] = e[i*E/Qm + j]
    rows = e // qm
    perm = (np.arange(qm)[None, :] * rows + np.arange(rows)[:, None]).ravel()
    out = sel[perm]
    out.setflags(write=False)
    return out
