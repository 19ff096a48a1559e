#!/usr/bin/env bash
# Run a bundle's demo end to end on its embedded default data: train the unpruned baseline, evaluate it on the
# held-out split, segment the test images with inference.json.  Usage: bash bundles/run_demo.sh <bundle folder name>
# Extra arguments are passed to every `monai.bundle run` (e.g. --num_epochs 10).
set -euo pipefail
name="${1:?usage: bash bundles/run_demo.sh <bundle name> [monai.bundle overrides]}"
shift
cd "$(dirname "$0")/$name"
python -m monai.bundle run --config_file configs/train.json --meta_file configs/metadata.json "$@"
python -m monai.bundle run --config_file "['configs/train.json','configs/evaluate.json']" --meta_file configs/metadata.json "$@"
python -m monai.bundle run --config_file configs/inference.json --meta_file configs/metadata.json
echo "demo finished: weights in $(pwd)/models, per-case metrics in $(pwd)/eval/case_metrics.csv, masks in $(pwd)/predictions"
