from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss

from monai_pruning.criteria import PerSampleLoss


def _pred_and_label(batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    pred = torch.randn((batch, 2, 8, 8), generator=generator)
    label = (torch.rand((batch, 1, 8, 8), generator=generator) > 0.7).float()
    return pred, label


def test_a_batch_pooling_loss_per_sample_is_the_sum_of_its_per_sample_version():
    pred, label = _pred_and_label()
    pooled = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, batch=True)
    separate = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, batch=False)
    per_sample = PerSampleLoss(pooled)(pred, label)
    torch.testing.assert_close(per_sample, 4 * separate(pred, label))
    assert not torch.allclose(per_sample, 4 * pooled(pred, label), rtol=1e-3)  # pooling made a difference


def test_each_sample_gets_only_its_own_gradient_and_lists_of_outputs_are_split_alike():
    pred, label = _pred_and_label()
    heads = [pred.clone().requires_grad_(), pred[..., ::2, ::2].clone().requires_grad_()]  # full and half size
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)

    def deep_supervision_loss(outputs, target):
        return sum(dice_ce(o, target[..., :: 8 // o.shape[-1], :: 8 // o.shape[-1]]) for o in outputs)

    PerSampleLoss(deep_supervision_loss)(heads, label).backward()
    for b in range(4):
        alone = [h.detach()[b : b + 1].clone().requires_grad_() for h in heads]
        deep_supervision_loss(alone, label[b : b + 1]).backward()
        for head, single in zip(heads, alone):
            torch.testing.assert_close(head.grad[b : b + 1], single.grad)


def test_a_loss_that_is_not_callable_or_a_prediction_without_batch_axis_is_refused():
    with pytest.raises(TypeError, match="PerSampleLoss: `loss` must be callable, got str"):
        PerSampleLoss("DiceCELoss")
    with pytest.raises(ValueError, match=r"PerSampleLoss: `pred` must hold a tensor with a batch axis"):
        PerSampleLoss(torch.nn.MSELoss())(torch.tensor(1.0), torch.tensor(1.0))
