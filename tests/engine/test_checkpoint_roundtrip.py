"""A pruned checkpoint goes through stock MONAI handlers and comes back whole (``docs/design.md``).

A tiny ``SupervisedTrainer`` run cuts its network after the first epoch and trains on; ``CheckpointSaver`` writes
``{"pruning": PruningRecord, "model": network, "optimizer": optimizer}``.  A freshly built *unpruned* network and its
optimizer then take that file through ``CheckpointLoader`` -- record first, so the network is reshaped before the
weights load strictly -- and must compute exactly what the trained network computes and train on identically.
``load_pruned_network`` does the same for inference and export, from pruned, unpruned and bare checkpoints.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.handlers import CheckpointLoader, CheckpointSaver
from monai.networks.nets import UNet

from monai_pruning.engine import ChannelPruner, PruningRecord, PruningRecordError, load_pruned_network, module_widths

SHAPE = (2, 1, 16, 16)
CUT = {"model.0.residual": [1], "model.1.submodule.0.residual": [0, 5], "model.1.submodule.2.0.conv": [3]}


def _unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(2, 1, 2, (4, 8, 16), (2, 2), num_res_units=1, norm="batch")


def _loss(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(pred, label[:, 0])


def _trainer(network: torch.nn.Module, optimizer: torch.optim.Optimizer, epochs: int) -> SupervisedTrainer:
    gen = torch.Generator().manual_seed(3)
    data = [
        {"image": torch.randn(1, 16, 16, generator=gen), "label": (torch.rand(1, 16, 16, generator=gen) > 0.5).long()}
        for _ in range(4)
    ]
    loader = torch.utils.data.DataLoader(data, batch_size=2, shuffle=False)
    return SupervisedTrainer(device=torch.device("cpu"), max_epochs=epochs, train_data_loader=loader,
                             network=network, optimizer=optimizer, loss_function=_loss)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[UNet, torch.optim.Optimizer, Path]:
    """Train two epochs, cutting after the first; the final checkpoint holds the pruned network."""
    network = _unet()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    trainer = _trainer(network, optimizer, epochs=2)
    pruner = ChannelPruner(network, SHAPE)

    @trainer.on(Events.EPOCH_COMPLETED(once=1))
    def _cut(engine) -> None:
        pruner.cut(CUT, optimizer=engine.optimizer)

    save_dir = tmp_path_factory.mktemp("ckpt")
    CheckpointSaver(str(save_dir), {"pruning": PruningRecord(network, optimizer), "model": network,
                                    "optimizer": optimizer}, save_final=True, final_filename="model.pt").attach(trainer)
    trainer.run()
    return network, optimizer, save_dir / "model.pt"


def _outputs(network: torch.nn.Module) -> torch.Tensor:
    x = torch.randn(*SHAPE, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return network.eval()(x)


def _fresh_with_optimizer(seed: int = 1) -> tuple[UNet, torch.optim.Optimizer]:
    fresh = _unet(seed)
    return fresh, torch.optim.Adam(fresh.parameters(), lr=1e-2)


def test_checkpoint_is_weights_only_loadable_with_a_plain_json_record(saved):
    network, _, path = saved
    content = torch.load(path, weights_only=True)
    assert list(content) == ["pruning", "model", "optimizer"]
    assert json.loads(json.dumps(content["pruning"])) == content["pruning"]
    assert content["pruning"]["modules"] == module_widths(network)
    assert content["pruning"]["modules"]["model.0.residual"]["out_channels"] == 3  # the cut is in the file


def test_checkpoint_loader_with_record_first_rebuilds_the_pruned_network_and_its_optimizer(saved):
    network, optimizer, path = saved
    fresh, fresh_optimizer = _fresh_with_optimizer()
    engine = _trainer(fresh, fresh_optimizer, epochs=3)

    CheckpointLoader(str(path), {"pruning": PruningRecord(fresh, fresh_optimizer), "model": fresh,
                                 "optimizer": fresh_optimizer})(engine)

    assert torch.equal(_outputs(fresh), _outputs(network))
    assert {id(p) for g in fresh_optimizer.param_groups for p in g["params"]} == {id(p) for p in fresh.parameters()}
    ours, theirs = fresh_optimizer.state_dict(), optimizer.state_dict()
    assert ours["param_groups"] == theirs["param_groups"]
    assert ours["state"].keys() == theirs["state"].keys()
    for index, state in theirs["state"].items():
        for key, value in state.items():
            assert torch.equal(ours["state"][index][key], value), f"{index}: {key}"
    for p in fresh.parameters():
        assert fresh_optimizer.state[p]["exp_avg"].shape == p.shape


def test_training_resumed_from_the_checkpoint_follows_the_original_run_exactly(saved):
    network, optimizer, path = saved
    original, original_optimizer = copy.deepcopy((network, optimizer))  # one deepcopy keeps them tied together
    fresh, fresh_optimizer = _fresh_with_optimizer()
    engine = _trainer(fresh, fresh_optimizer, epochs=1)
    CheckpointLoader(str(path), {"pruning": PruningRecord(fresh, fresh_optimizer), "model": fresh,
                                 "optimizer": fresh_optimizer})(engine)

    _trainer(original, original_optimizer, epochs=1).run()  # one more epoch of the original run
    _trainer(fresh, fresh_optimizer, epochs=1).run()  # the same epoch on the reloaded network

    assert not torch.equal(_outputs(original), _outputs(network))  # it did train on
    assert torch.equal(_outputs(fresh), _outputs(original))


def test_checkpoint_loader_with_model_before_record_fails_with_a_size_mismatch(saved):
    # Ignite loads ``load_dict`` in insertion order: the record must come first to reshape the network.
    _, _, path = saved
    fresh, fresh_optimizer = _fresh_with_optimizer()
    engine = _trainer(fresh, fresh_optimizer, epochs=1)
    loader = CheckpointLoader(str(path), {"model": fresh, "pruning": PruningRecord(fresh, fresh_optimizer),
                                          "optimizer": fresh_optimizer})
    with pytest.raises(RuntimeError, match="size mismatch"):
        loader(engine)


def test_load_pruned_network_rebuilds_a_pruned_checkpoint_in_eval_mode(saved):
    network, _, path = saved
    fresh = _unet(seed=1).train()
    loaded = load_pruned_network(fresh, path)
    assert loaded is fresh and not any(m.training for m in fresh.modules())
    assert torch.equal(_outputs(fresh), _outputs(network))


def test_load_pruned_network_reads_an_unpruned_checkpoint_with_record_and_a_bare_state_dict(tmp_path):
    network = _unet()
    with_record, bare = tmp_path / "with_record.pt", tmp_path / "bare.pt"
    torch.save({"pruning": PruningRecord(network).state_dict(), "model": network.state_dict()}, with_record)
    torch.save(network.state_dict(), bare)

    for path in (with_record, bare):
        fresh = load_pruned_network(_unet(seed=1), path)
        assert torch.equal(_outputs(fresh), _outputs(network)), path.name


def test_load_pruned_network_refuses_a_missing_file_naming_it(tmp_path):
    missing = tmp_path / "models" / "model.pt"
    with pytest.raises(FileNotFoundError, match=f"checkpoint not found: {missing}"):
        load_pruned_network(_unet(), missing)


def test_load_pruned_network_refuses_unreadable_and_unfitting_files_in_one_line(tmp_path, saved):
    network, _, path = saved
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(PruningRecordError, match="cannot read checkpoint .*garbage.pt") as err:
        load_pruned_network(_unet(), garbage)
    assert "\n" not in str(err.value)

    bare_pruned = tmp_path / "bare_pruned.pt"
    torch.save(network.state_dict(), bare_pruned)  # pruned weights without their record
    with pytest.raises(PruningRecordError, match="weights in .*bare_pruned.pt do not fit UNet: size mismatch") as err:
        load_pruned_network(_unet(), bare_pruned)
    assert "\n" not in str(err.value)
