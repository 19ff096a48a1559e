"""The torch.distributed helpers: identity in one process, collectives on spawned CPU processes (gloo)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from monai_pruning.distributed import (
    broadcast_plain,
    end_process_group,
    is_distributed,
    rank,
    rank_zero_first,
    rewrap,
    sum_each_over_ranks,
    sum_over_ranks,
    unwrap_network,
)

from process_groups import COLLECTIVE_TIMEOUT, gloo_group, run_ranks

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")

DECISION = {"removals": {"model.0.conv": [3, 1], "décodeur": []}, "tau": 0.25, "stop": None, "ok": True}


def test_without_a_process_group_every_helper_is_the_identity():
    assert not is_distributed() and rank() == 0
    assert broadcast_plain(DECISION) is DECISION
    values = torch.arange(3.0)
    summed = sum_over_ranks(values)
    assert torch.equal(summed, values) and summed is not values
    several = sum_each_over_ranks({"a": values, "b": torch.ones(2, 2, dtype=torch.float32)})
    assert torch.equal(several["a"], values) and several["b"].shape == (2, 2) and several["b"].dtype == torch.float32
    assert sum_each_over_ranks({}) == {}
    entered = []
    with rank_zero_first():
        entered.append(True)
    assert entered == [True]
    net = nn.Conv2d(1, 2, 3)
    assert unwrap_network(net) is net
    assert unwrap_network(nn.DataParallel(net)) is net


def _rewrap_worker(rank_: int, init_file: str) -> None:
    with gloo_group(init_file, rank_, 1):
        net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
        old = nn.parallel.DistributedDataParallel(
            net, find_unused_parameters=True, gradient_as_bucket_view=True, bucket_cap_mb=1, dim=0
        )
        net[0].weight = nn.Parameter(torch.randn(3, 1, 3, 3))  # as a cut replaces parameters
        new = rewrap(old)
        assert new is not old and new.module is net and unwrap_network(new) is net
        assert new.find_unused_parameters and new.gradient_as_bucket_view
        assert new.bucket_bytes_cap == old.bucket_bytes_cap == 1024 * 1024
        assert new.process_group is old.process_group and new.device_ids is None
        assert any(p is net[0].weight for p in new._module_parameters)  # the new reducer knows the new parameter
        with pytest.raises(TypeError, match="expected a DistributedDataParallel"):
            rewrap(net)


def test_rewrap_builds_a_new_wrapper_around_the_same_network_with_the_same_settings(tmp_path):
    run_ranks(_rewrap_worker, 1, str(tmp_path / "init"))


def _worker(rank_: int, init_file: str, out: str) -> None:
    with gloo_group(init_file, rank_, 2):
        result: dict = {"distributed": is_distributed(), "rank": rank()}
        result["decision"] = broadcast_plain(DECISION if rank_ == 0 else {"removals": "rank 1's own"})
        result["sum"] = sum_over_ranks(torch.tensor([1.5, rank_], dtype=torch.float32)).tolist()
        marker = Path(out) / "written_by_rank0"
        with rank_zero_first():
            if rank_ == 0:
                marker.write_text("x")
            result["saw_rank0_file"] = marker.exists()
        try:
            with rank_zero_first():
                if rank_ == 0:
                    raise RuntimeError("rank 0 failed")
                result["rank1_ran_after_rank0_failed"] = True
        except RuntimeError:
            result["rank0_raised"] = True
        dist.barrier()
    (Path(out) / f"rank{rank_}.json").write_text(json.dumps(result))


def test_on_two_ranks_rank_zeros_decision_reaches_everyone_sums_add_up_and_rank_zero_goes_first(tmp_path):
    run_ranks(_worker, 2, str(tmp_path / "init"), str(tmp_path))
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert first["distributed"] and second["distributed"] and (first["rank"], second["rank"]) == (0, 1)
    assert first["decision"] == second["decision"] == DECISION
    assert first["sum"] == second["sum"] == [3.0, 1.0]
    assert first["saw_rank0_file"] and second["saw_rank0_file"]
    assert first.get("rank0_raised") and second.get("rank1_ran_after_rank0_failed")


def _end_worker(rank_: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank_, world_size=2,
                            timeout=COLLECTIVE_TIMEOUT)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 1, 3))
    wrappers = [nn.parallel.DistributedDataParallel(net) for _ in range(2)]  # as after a rewrap: old and new
    for _ in range(2):
        wrappers[-1](torch.randn(2, 1, 12, 12)).sum().backward()
    end_process_group()
    result = {"initialized": dist.is_initialized(),
              "released": [not any(hasattr(w, name) for name in ("reducer", "logger", "process_group"))
                           for w in wrappers]}
    end_process_group()  # a second call (nothing left to end) is a no-op
    (Path(out) / f"rank{rank_}.json").write_text(json.dumps(result))


def test_ending_the_process_group_releases_every_ddp_wrappers_hold_on_it_and_destroys_it(tmp_path):
    end_process_group()  # without a process group: nothing to do
    run_ranks(_end_worker, 2, str(tmp_path / "init"), str(tmp_path))
    for r in range(2):
        assert json.loads((tmp_path / f"rank{r}.json").read_text()) == {"initialized": False,
                                                                        "released": [True, True]}
