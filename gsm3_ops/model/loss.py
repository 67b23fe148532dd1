"""The GSM3 multitask loss: the sum over targets of RMSE on valid (non-NaN) points."""

from __future__ import annotations

import torch


def masked_multitask_rmse(pred: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """Sum over the last axis (targets) of the RMSE between ``pred`` and ``obs`` where ``obs``
    is not NaN. A target with no valid value contributes zero, never NaN, and keeps the graph."""
    total = pred.sum() * 0.0
    for k in range(obs.shape[-1]):
        valid = ~torch.isnan(obs[..., k])
        if bool(valid.any()):
            diff = pred[..., k][valid] - obs[..., k][valid]
            total = total + torch.sqrt(torch.mean(diff * diff))
    return total
