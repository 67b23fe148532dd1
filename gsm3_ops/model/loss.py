"""The GSM3 multitask loss: the sum over targets of RMSE on valid (non-NaN) points."""

from __future__ import annotations

import torch


def masked_multitask_rmse(pred: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """Sum over the last axis (targets) of the RMSE between ``pred`` and ``obs`` where ``obs``
    is not NaN (RMSE_smap + RMSE_insitu for the GSM3 targets).

    A target with no valid value in the batch contributes zero, never NaN, and its gradient
    is zero. The computation is mask-based (no data-dependent branches), so on a GPU it
    never waits for the device. A single output (``pred`` with one channel: the paper's
    shared head) is compared with every target.
    """
    pred = pred.float()
    if pred.shape[-1] == 1 and obs.shape[-1] > 1:
        pred = pred.expand(obs.shape)
    valid = ~torch.isnan(obs)
    diff = torch.where(valid, pred - torch.nan_to_num(obs), torch.zeros_like(pred))
    dims = tuple(range(obs.dim() - 1))
    count = valid.sum(dim=dims)
    has = count > 0
    # Where a target has no value, feed sqrt a harmless 1 so that its gradient stays finite.
    mse = torch.where(
        has,
        (diff * diff).sum(dim=dims) / count.clamp(min=1),
        torch.ones_like(count, dtype=pred.dtype),
    )
    rmse = torch.where(has, torch.sqrt(mse), torch.zeros_like(mse))
    return rmse.sum()
