"""Token ids in and out: lists, numpy arrays and (only when installed) torch tensors."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import numpy as np


def is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def as_id_array(ids: Any) -> np.ndarray:
    """One sequence of ids as a contiguous int32 numpy array (list, numpy or torch, [n] or [1, n])."""
    if is_torch(ids):
        ids = ids.detach().cpu().numpy()
    a = np.asarray(ids)
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 1:
        raise ValueError(f"expected one sequence of token ids, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"token ids must be integers, got {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > np.iinfo(np.int32).max):
        raise ValueError("token ids must be in [0, 2^31 - 1]")
    return np.ascontiguousarray(a, dtype=np.int32)


def as_id_list(ids: Any) -> List[int]:
    return [int(t) for t in as_id_array(ids)]


def wrap_ids(rows: Sequence[Sequence[int]], return_tensors: Optional[str]) -> Any:
    """[batch, n] ids as transformers' return_tensors asks: "np" (numpy) or "pt" (torch)."""
    a = np.asarray(rows, dtype=np.int64)
    if return_tensors == "pt":
        import torch

        return torch.from_numpy(a)
    if return_tensors in ("np", None):
        return a
    raise ValueError(f"return_tensors={return_tensors!r}: only 'np' and 'pt' are supported")
