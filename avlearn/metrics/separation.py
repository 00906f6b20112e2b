"""Source separation metrics as papers report them.

- :func:`si_sdr` — scale-invariant SDR (Le Roux et al. 2019): zero-mean signals, the reference scaled to
  its projection; in dB. :func:`si_sdr_matrix` scores every estimate against every reference, for
  checking that the voice went to the right face.
- :func:`bss_eval` — SDR / SIR / SAR of BSS-eval v3 (Vincent et al. 2006), the figures
  ``mir_eval.separation.bss_eval_sources(..., compute_permutation=False)`` gives (the order is given by
  the video), computed with one Gram system for all estimates.
- :func:`stoi` — short-time objective intelligibility (Taal et al. 2011) from ``pystoi``.
- :func:`pit_assign` — which estimate goes with which reference when nothing says (an audio-only separator):
  the permutation with the best mean score (permutation-invariant training, Yu et al. 2017), found by
  ``torchmetrics``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.audio import permutation_invariant_training, pit_permutate

_EPS = 1e-8


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """SI-SDR in dB of ``estimate`` against ``reference``, both ``(..., S)``; returns ``(...)``."""
    est = estimate - estimate.mean(dim=-1, keepdim=True)
    ref = reference - reference.mean(dim=-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + _EPS)
    target = scale * ref
    noise = est - target
    return 10 * torch.log10((target.pow(2).sum(-1) + _EPS) / (noise.pow(2).sum(-1) + _EPS))


def si_sdr_matrix(estimates: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """``(N, S)`` estimates x ``(M, S)`` references -> ``(N, M)`` SI-SDR of each estimate against each reference."""
    return si_sdr(estimates[:, None, :], references[None, :, :])


def bss_eval(
    estimates: np.ndarray | torch.Tensor, references: np.ndarray | torch.Tensor, filter_length: int = 512
) -> dict[str, np.ndarray]:
    """BSS-eval v3 ``sdr``, ``sir``, ``sar`` ``(N,)`` in dB, estimate ``i`` scored against reference ``i``.

    The definition of Vincent, Gribonval & Fevotte (2006) as ``mir_eval.separation.bss_eval_sources``
    computes it with ``compute_permutation=False`` (the order is given by the video), with its 512-tap
    distortion filters: the estimate is projected onto the delayed copies (0..511 samples) of its own
    reference (target) and of all references (target + interference); what remains is artifacts.
    Unlike mir_eval, which rebuilds and solves the Gram system once per estimate, this builds it once and
    solves for every estimate together; ``tests/test_separation.py`` checks the figures equal mir_eval's.
    (mir_eval 0.8 deprecates its separation module, so avlearn does not depend on it at run time.)

    Raises:
        ValueError: shapes differ, or a reference or an estimate is all zeros (the measures are undefined).
    """
    from scipy.linalg import LinAlgError, solve, toeplitz

    est = np.asarray(estimates, dtype=np.float64)
    ref = np.asarray(references, dtype=np.float64)
    if est.shape != ref.shape or est.ndim != 2:
        raise ValueError(f"estimates {est.shape} and references {ref.shape} must both be (N, S)")
    if not (np.abs(ref).max(axis=1) > 0).all() or not (np.abs(est).max(axis=1) > 0).all():
        raise ValueError("BSS-eval is undefined for an all-zero reference or estimate")
    n, length = ref.shape
    taps = filter_length
    nfft = 1 << int(np.ceil(np.log2(length + taps - 1)))
    rf = np.fft.rfft(ref, nfft)
    ef = np.fft.rfft(est, nfft)
    # gram[(i, a), (j, b)] = <ref_i delayed by a, ref_j delayed by b> = corr_ij(b - a)
    gram = np.empty((n * taps, n * taps))
    for i in range(n):
        for j in range(i, n):
            corr = np.fft.irfft(rf[i] * np.conj(rf[j]), nfft)  # corr[k] = sum_t ref_i[t + k] ref_j[t]
            block = toeplitz(corr[(-np.arange(taps)) % nfft], corr[:taps])
            gram[i * taps : (i + 1) * taps, j * taps : (j + 1) * taps] = block
            gram[j * taps : (j + 1) * taps, i * taps : (i + 1) * taps] = block.T
    # rhs[(i, a), e] = <est_e, ref_i delayed by a>
    rhs = np.concatenate([np.fft.irfft(ef * np.conj(rf[i]), nfft)[:, :taps].T for i in range(n)], axis=0)

    def project(coef: np.ndarray, sources: list[int]) -> np.ndarray:
        """Filtered sum of the given references, ``coef (len(sources) * taps,)`` -> ``(length + taps - 1,)``."""
        out = np.zeros(length + taps - 1)
        for k, i in enumerate(sources):
            out += np.convolve(coef[k * taps : (k + 1) * taps], ref[i])
        return out

    def lsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        try:
            return solve(a, b, assume_a="sym")
        except LinAlgError:  # exactly dependent references
            return np.linalg.lstsq(a, b, rcond=None)[0]

    coef_all = lsq(gram, rhs)  # (n * taps, n): every estimate at once
    sdr, sir, sar = np.empty(n), np.empty(n), np.empty(n)
    for e in range(n):
        block = slice(e * taps, (e + 1) * taps)
        target = project(lsq(gram[block, block], rhs[block, e]), [e])
        both = project(coef_all[:, e], list(range(n)))
        padded = np.concatenate([est[e], np.zeros(taps - 1)])
        energy = lambda x: np.sum(x**2)  # noqa: E731
        sdr[e] = 10 * np.log10(energy(target) / energy(padded - target))
        sir[e] = 10 * np.log10(energy(target) / energy(both - target))
        sar[e] = 10 * np.log10(energy(both) / energy(padded - both))
    return {"sdr": sdr, "sir": sir, "sar": sar}


def stoi(estimate: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor, sample_rate: int) -> float:
    """STOI in [0, 1] (pystoi resamples to its 10 kHz internally)."""
    from pystoi import stoi as _stoi

    return float(_stoi(np.asarray(reference, np.float64), np.asarray(estimate, np.float64), sample_rate))


def pit_assign(
    estimates: torch.Tensor,
    references: torch.Tensor,
    metric: Callable[..., torch.Tensor],
    *,
    larger_is_better: bool = True,
    **metric_args: Any,
) -> torch.Tensor:
    """``estimates (B, K, ...)`` reordered so that ``[:, k]`` is the one assigned to ``references[:, k]``.

    The assignment maximizes (or minimizes) the mean of ``metric(estimate, reference, **metric_args)`` over
    the K pairs; ``metric`` takes ``(B, ...)`` tensors and returns ``(B,)``. The search
    (``torchmetrics.functional.audio.permutation_invariant_training``: every permutation for two sources,
    the Hungarian algorithm from three) runs without gradients; they flow through the reordered estimates.
    """
    with torch.no_grad():
        _, perm = permutation_invariant_training(
            estimates, references, metric, eval_func="max" if larger_is_better else "min", **metric_args
        )
    return pit_permutate(estimates, perm)
