"""The degree-ordered ancestral sampler: about one forward pass for a batch of samples.

The reference is :func:`made_np.sampling.sample_naive` (D forward passes); for the same
noise the two return the same samples (tests/test_sampling.py), and docs/math.md
(Sec. 7, "Ancestral sampling") derives why this one is exact.
"""
from __future__ import annotations

from .. import backend
from ..layers import ReLU
from ..sampling import checked_draw


def _augmented_transpose(xp, W, bias, rows, cols, dtype, context=None, width: int = 0):
    """``[bias | (U[:, cols]).T | (W[rows][:, cols]).T]``: shape (len(cols), 1 + width + len(rows)), C-contiguous.

    Column 0 holds the bias (zero when ``bias`` is None), so that a product with a
    buffer whose row 0 is all ones adds the bias for free. Columns 1..width hold the
    context block ``U`` (width, fan_out) (zeros when None) for a product with the input
    buffer, whose rows 1..width hold the context: the context is an input of degree 0.
    ``W`` may be None (no input columns).
    """
    n_rows = 0 if W is None else len(rows)
    out = xp.zeros((len(cols), 1 + width + n_rows), dtype=dtype)
    if bias is not None:
        out[:, 0] = bias[cols]
    if context is not None:
        out[:, 1:1 + width] = context[:, cols].T
    if W is not None:
        out[:, 1 + width:] = W[rows][:, cols].T
    return out


def _inplace_activation(act, xp):
    """A function applying ``act`` in place on a view (the hidden buffer)."""
    if isinstance(act, ReLU):
        maximum = xp.maximum
        return lambda a: maximum(a, 0, out=a)

    def apply(a):
        h = act.forward(a)
        if h is not a:
            a[...] = h
    return apply


def sample_fast(model, n: int | None = None, *, noise=None, seed: int | None = None, context=None,
                given=None, n_given: int = 0, mask=0):
    """Degree-ordered ancestral sampling: about one forward pass in total (docs/math.md Sec. 7;
    Sec. 9 for a context, Sec. 10 for a given prefix).

    A hidden unit of degree ``m^l(k) = j`` depends only on the inputs at ordering
    positions ``<= j``, so its value is final as soon as those inputs have been
    sampled. Everything is therefore permuted once into ordering/degree order:
    the input columns by position ``m^0``, the units of every hidden layer by
    degree (stable sort) and the output columns by position. In that order the
    units known before position ``k`` is sampled form a *prefix* of every layer,
    and the masked weight matrices only ever need a prefix of their rows.

    For ``k = 1..D``:

    1. for every hidden layer ``l``, the units of degree exactly ``k - 1`` (a
       contiguous slice, skipped when empty) are computed from the prefix of
       layer ``l - 1`` with degree ``<= k - 1`` (the inputs at positions
       ``< k`` for ``l = 1``): one small matrix product and the activation;
    2. the logits of the variable at position ``k`` are computed from the prefix
       of the last hidden layer with degree ``< k`` (paper eq. 13), plus the
       direct connections from the inputs at positions ``< k`` (eq. 11);
    3. the variable is drawn with the same noise column ``u[:, d]`` as
       :func:`sample_naive` and written, encoded (0/1, one-hot block, raw or
       scaled value), into the position-ordered input buffer.

    Each hidden unit is computed exactly once, from a prefix no longer than its
    fan-in, and each output column once: the arithmetic is at most one masked
    forward pass (about half of a dense one), in ``D`` rounds of a few small
    BLAS calls. Buffers are stored feature-major, ``(features, n)``, with a row
    of ones prepended so that biases ride along in the products, which makes
    every slice above a contiguous block of rows. Bernoulli draws compare the
    logit with the precomputed ``logit(u) = log u - log1p(-u)``:
    ``u < sigmoid(z)  <=>  z > logit(u)``, one comparison per position, written
    straight into the input buffer.

    A conditional model's context is an input of degree 0 (docs/math.md, "Context
    inputs"): its rows sit in the input buffer right after the row of ones, before
    position 1, so the first hidden layer's products take ``U^1`` with the bias,
    and the logits of every position get ``y U^V`` with the direct connections.

    With a given prefix (``n_given = k > 0``), the variables at positions 1..k are
    written into the input buffer first, every hidden unit of degree < k is computed
    in one product per layer (all of them depend on the given variables only), and
    the rounds run for positions k+1..D: the completion of an observed-first mask
    (:func:`made_np.conditional.complete`) in about one forward pass.

    The conditionals are those of the naive sampler up to floating-point
    rounding (sums taken in another order), so for the same noise the two
    return the same samples except in the event, of probability about the
    machine epsilon per draw, that ``u`` falls within rounding of a conditional
    probability.

    Parameters
    ----------
    model : made_np.model.MADE
        Any head, input encoding, ordering, depth, activation, with or without direct
        connections or a context.
    n : int
        Number of samples (required without ``noise``; with it, its number of rows).
    noise : array on ``model.xp``, shape (n, D), float, optional
        Uniform noise in [0, 1), indexed by variable; drawn from ``seed`` when absent
        (float64, :func:`made_np.sampling.draw_noise`).
    seed : int, optional
        Seed of the noise when ``noise`` is absent; None draws fresh noise every call
        (:func:`~made_np.sampling.draw_noise`).
    context : array, optional
        A conditional model's context (see :func:`made_np.sampling.sample_naive`).
    given : array, shape (n, D), optional
        Values of the variables at positions 1..``n_given`` of the mask's ordering; only
        those entries are read (as by :func:`~made_np.sampling.sample_naive`), and they are
        not range-checked.
    n_given : int, default 0
        How many leading positions are given rather than drawn.
    mask : int or made_np.masks.MaskSet, default 0
        The mask sampled under (:meth:`~made_np.model.MADE.mask`).

    Returns
    -------
    array, shape (n, D): uint8 in {0, 1} (Bernoulli head) or int64 in 0..C-1 (categorical);
    the given variables hold their given values.

    Raises
    ------
    ValueError
        Any argument that :func:`made_np.sampling.checked_draw` refuses.
    """
    return draw_fast(model, *checked_draw(model, n, noise, seed, context, given, n_given, mask, blocked=False))


def draw_fast(model, u, y=None, given=None, n_given: int = 0, mask=0):
    """:func:`sample_fast` on checked arguments (:func:`made_np.sampling.checked_draw`): ``u``
    noise (n, D) on the device, ``y`` the encoded context (n, context) or None, the first
    ``n_given`` positions given. Returns the samples (n, D)."""
    start = n_given
    xp, c = backend.native(model.xp), model.config
    D, dtype, n = c.D, model.dtype, u.shape[0]
    Cw = c.context  # context rows of the input buffer (degree 0)
    Rin, Rout = model.in_repeat, model.out_repeat
    ms, masks = model._mask(mask)

    # ---- permutations (host lists -> device index arrays)
    var_at = [int(v) for v in backend.to_host(ms.ordering).argsort()]  # variable at position p (0-based)
    in_cols = xp.asarray([v * Rin + r for v in var_at for r in range(Rin)])
    out_cols = xp.asarray([v * Rout + r for v in var_at for r in range(Rout)])
    degs = [backend.to_host(m) for m in ms.degrees]
    sorts = [m.argsort(kind="stable") for m in degs]
    sorted_degs = [m[s] for m, s in zip(degs, sorts)]
    perms = [in_cols] + [xp.asarray(s) for s in sorts]

    # ---- sorted, masked, transposed and bias-augmented weights; the input buffer's
    # ---- products (first hidden layer, or the output layer without one) skip the context rows
    UH = None if model.context_hidden is None else model.context_hidden.W  # the context's block into layer 1
    WT = [
        _augmented_transpose(xp, layer.masked_weight(masks[i]), layer.b, perms[i], perms[i + 1], dtype,
                             UH if i == 0 else None, Cw if i == 0 else 0)
        for i, layer in enumerate(model.layers[:-1])
    ]
    out_layer = model.layers[-1]
    VT = _augmented_transpose(xp, out_layer.masked_weight(masks[len(model.layers) - 1]), out_layer.b, perms[-1], out_cols, dtype,
                              None, Cw if not c.hidden else 0)
    AT = None  # direct connections from the input buffer: the context's U^V and, if direct, A
    if model.direct is not None or Cw:
        A = None if model.direct is None else model.direct.masked_weight(masks[-1])
        UV = None if model.context_output is None else model.context_output.W
        AT = _augmented_transpose(xp, A, None, in_cols, out_cols, dtype, UV, Cw)

    # ---- buffers, feature-major with a leading row of ones (then the context, then the inputs)
    XT = xp.zeros((1 + Cw + D * Rin, n), dtype=dtype)
    if Cw:
        XT[1:1 + Cw] = y.T
    X_at = 1 + Cw  # row of the first input column
    HT = [xp.empty((1 + width, n), dtype=dtype) for width in c.hidden]
    bufs = [XT] + HT
    for buf in bufs:
        buf[0] = 1
    acts = [_inplace_activation(a, xp) for a in model.activations]

    # per layer and position p: first unit of degree >= p, and first of degree > p
    positions = list(range(D))
    lo = [[int(i) for i in sd.searchsorted(positions, side="left")] for sd in sorted_degs]
    hi = [[int(i) for i in sd.searchsorted(positions, side="right")] for sd in sorted_degs]

    def known(level, p):
        """Rows (ones row and context included) of ``bufs[level]`` with degree <= p."""
        return X_at + p * Rin if level == 0 else 1 + hi[level - 1][p]

    # ---- the program: per position, the hidden slices to compute and the output views
    hidden_ops, out_ops = [], []
    for p in range(D):  # position k = p + 1; units of degree p become computable
        ops = []
        for l in range(len(HT)):
            a, b = lo[l][p], hi[l][p]
            if b > a:
                q = known(l, p)
                ops.append((WT[l][a:b, :q], bufs[l][:q], HT[l][1 + a:1 + b], acts[l]))
        hidden_ops.append(ops)
        q = known(len(HT), p)
        qx = (X_at + p * Rin) if model.direct is not None else X_at
        rows = p if Rout == 1 else slice(p * Rout, (p + 1) * Rout)
        out_ops.append((VT[rows, :q], bufs[-1][:q], None if AT is None else AT[rows, :qx], XT[:qx]))

    matmul = xp.matmul

    if start:  # the given prefix: its input rows, then every hidden unit of degree < start at once
        given_vars = xp.asarray(var_at[:start])
        g = xp.zeros((n, D), dtype=getattr(xp, model.head.sample_dtype))  # only the given entries are read, as by the reference
        g[:, given_vars] = xp.asarray(given)[:, given_vars]
        XT[X_at:X_at + start * Rin] = model.encode(g)[0][:, in_cols[:start * Rin]].T
        for l in range(len(HT)):
            b = hi[l][start - 1]
            if b:
                q = known(l, start - 1)
                out = HT[l][1:1 + b]
                matmul(WT[l][:b, :q], bufs[l][:q], out=out)
                acts[l](out)

    def logits_at(p):
        """Compute the hidden units that become final at position ``p``, then its logits (Rout, n)."""
        for w, s, o, act in hidden_ops[p]:
            matmul(w, s, out=o)
            act(o)
        v, s, a, sx = out_ops[p]
        z = matmul(v, s)
        if a is not None:
            z += matmul(a, sx)
        if model._pins is not None:  # an atom's pinned outputs (docs/math.md Sec. 13, "Atoms")
            at = slice(var_at[p] * Rout, (var_at[p] + 1) * Rout)
            z = xp.where(model._pins[0][at, None], model._pins[1][at, None], z)
        return z

    if model.head.binary:
        # the head's thresholds on the logits (x = 1[z > t]), position-major (D, n)
        TT = model.head.thresholds(u.T[xp.asarray(var_at)]).astype(dtype)
        greater, subtract = xp.greater, xp.subtract
        onehot = Rin == 2
        for p in range(start, D):
            z = logits_at(p)
            if onehot:  # rows (1 - x, x) of the one-hot block
                one = XT[X_at + 1 + 2 * p]
                greater(z, TT[p], out=one)
                subtract(1, one, out=XT[X_at + 2 * p])
            else:  # binary, raw and scaled (C = 2) all encode x as itself
                greater(z, TT[p], out=XT[X_at + p])
        x_pos = XT[X_at + 1::2] if onehot else XT[X_at:]
        out = x_pos.astype(xp.uint8)
    else:
        C, head = model.out_repeat, model.head
        enc = c.input_encoding
        eye = xp.eye(C, dtype=dtype)
        x_pos = xp.empty((D, n), dtype=getattr(xp, model.head.sample_dtype))  # standardised values for a real head
        if start:
            x_pos[:start] = model._standardise(g)[:, xp.asarray(var_at[:start])].T
        for p in range(start, D):
            z = logits_at(p)
            d = var_at[p]
            cls = head.sample_at(z.T, u[:, d:d + 1], [d])[:, 0]
            x_pos[p] = cls
            if enc == "onehot":
                XT[X_at + p * C:X_at + (p + 1) * C] = eye[:, cls]
            else:
                row = XT[X_at + p]
                row[...] = cls
                if enc == "scaled":
                    row /= C - 1
        out = x_pos.astype(model.head.sample_dtype, copy=False)
    # back to variable order: variable d sits at position m^0(d) - 1
    pos_of = xp.asarray(backend.to_host(ms.ordering) - 1)
    return model._unstandardise(xp.ascontiguousarray(out[pos_of].T))
