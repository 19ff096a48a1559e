"""Filter pruning for MONAI segmentation networks.

The package is layered (``docs/design.md``): ``monai_pruning.engine`` traces a network into channel groups and cuts them
physically; ``monai_pruning.criteria`` holds the pure maths of the pruning methods; ``monai_pruning.handlers`` wires
them into PyTorch-Ignite engines; ``monai_pruning.data`` and ``monai_pruning.transforms`` read the public datasets;
``monai_pruning.measure`` counts parameters, MACs and latency; ``monai_pruning.report`` writes histories and plots;
``monai_pruning.distributed`` lets the handlers prune the same channels on every process of a ``torchrun`` job.
"""

__version__ = "0.2.0"

from monai_pruning.engine import ChannelPruner, PruningRecord, load_pruned_network  # noqa: E402

__all__ = ["ChannelPruner", "PruningRecord", "load_pruned_network", "__version__"]
