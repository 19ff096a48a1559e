#!/usr/bin/env bash
# What this project is for, in one command, on a bundle's embedded demo data (synthetic phantoms written in the real
# dataset's layout): train the unpruned baseline; prune it with TaylorFO (fine-tuning from the baseline); train a
# Sauron-pruned network from scratch on a short demo schedule; evaluate all three on the held-out test split; segment
# the demo images with the TaylorFO-pruned network; compare the three (parameters, MACs, test Dice, CPU latency,
# checkpoint size, as ratios to the baseline; CPU latency and frames per second in every installed runtime: eager
# PyTorch, TorchScript, ONNX Runtime, OpenVINO) in the terminal and as a page with a figure in report/.
#
#   bash bundles/run_demo.sh <bundle folder name> [monai.bundle overrides for every run, e.g. --demo_cases 40]
#
# VERBOSE=1 shows every log line (each iteration's loss, validation tables, each written mask: the bundle's
# configs/logging.conf) instead of one line per epoch (bundles/logging_brief.conf). TAYLORFO_OVERRIDES and
# SAURON_OVERRIDES add overrides to that method's training only (split on spaces), e.g.
# SAURON_OVERRIDES="--sauron#target_macs_reduction 0.7". Outputs: models/model_baseline.pt (baseline),
# models/taylorfo/ and models/sauron/ (pruned), models/model.pt (a copy of the TaylorFO one, what inference.json and
# pack_bundle use), runs/, eval/, predictions/, report/.
set -euo pipefail
name="${1:?usage: bash bundles/run_demo.sh <bundle folder name> [monai.bundle overrides]}"
shift
here="$(cd "$(dirname "$0")" && pwd)"
if [[ ! -f "$here/$name/configs/train.json" ]]; then
    echo "ERROR: no bundle '$name' in $here (one of: $(cd "$here" && ls -d */ | tr -d / | tr '\n' ' '))" >&2
    exit 2
fi
cd "$here/$name"

# The demo schedules: shorter than the bundles' documented runs so the whole demo takes minutes on 2 CPU cores.
case "$name" in
    polyp_endoscopy_segmentation)
        baseline=()  # train.json: 20 epochs
        baseline_text="20 epochs"
        taylorfo=(--num_epochs 12 --taylorfo#prune_fraction 0.05 --taylorfo#target_macs_reduction 0.5
                  --taylorfo#tolerance 0.03)
        taylorfo_text="12 epochs from the baseline, 5% of the channels per epoch until 50% of the MACs are removed or the validation Dice is 0.03 below the baseline's"
        sauron=(--sauron#tau_start 0.3 --sauron#tau_max 0.5 --sauron#patience 1 --sauron#plateau_tolerance 0.2
                --sauron#target_macs_reduction 0.5)
        sauron_text="20 epochs from scratch, thresholds from 0.3 (the paper's highest) to 0.5, raised after 1 epoch within 20% of the best loss, stop at 50% of MACs removed"
        latency_sizes=(--latency_size 352 352)  # whole polyp frames besides the training crops
        ;;
    kidney_ct_segmentation | brain_mri_segmentation)
        baseline=(--num_epochs 40)
        baseline_text="40 epochs"
        taylorfo=(--num_epochs 16 --val_interval 2 --taylorfo#target_macs_reduction 0.5 --taylorfo#tolerance 0.03)
        taylorfo_text="16 epochs from the baseline, 5% of the channels (at most 5% of the MACs) per epoch until 50% of the MACs are removed or the validation Dice is 0.03 below the baseline's"
        sauron=(--num_epochs 40 --sauron#tau_start 0.3 --sauron#tau_max 0.5 --sauron#patience 1
                --sauron#plateau_tolerance 0.2 --sauron#target_macs_reduction 0.5)
        sauron_text="40 epochs from scratch, thresholds from 0.3 (the paper's highest) to 0.5, raised after 1 epoch within 20% of the best loss, stop at 50% of MACs removed"
        latency_sizes=()  # the training size only
        ;;
    *)
        echo "ERROR: no demo schedule for bundle '$name' in $0" >&2
        exit 2
        ;;
esac
read -r -a taylorfo_extra <<< "${TAYLORFO_OVERRIDES:-}"
read -r -a sauron_extra <<< "${SAURON_OVERRIDES:-}"

if [[ "${VERBOSE:-0}" == "1" ]]; then
    logging=(--logging_file configs/logging.conf)
else
    logging=(--logging_file ../logging_brief.conf)
    # MONAI warns on every run that a config's expressions are executed (these are the bundle's own configs), and
    # its Hausdorff distance on every evaluation that one of its own arguments is deprecated
    export PYTHONWARNINGS="ignore:parsing config_file,ignore:monai.metrics.utils get_mask_edges${PYTHONWARNINGS:+,$PYTHONWARNINGS}"
fi
bundle() {  # one `python -m monai.bundle run` with the given config files (then overrides)
    local files="$1"
    shift
    python -m monai.bundle run --config_file "$files" --meta_file configs/metadata.json "${logging[@]}" "$@"
}
started=$SECONDS
phase() {
    local elapsed=$((SECONDS - started))
    printf '\n==> [%s/6 at %d:%02d] %s\n' "$1" $((elapsed / 60)) $((elapsed % 60)) "$2"
}

echo "demo of $name in $(pwd): baseline, TaylorFO and Sauron, then a comparison (VERBOSE=1 shows every log line)"
if [[ $# -gt 0 ]]; then
    echo "overrides for every run, on top of the schedules below: $*"
fi

phase 1 "training the unpruned baseline ($baseline_text)"
bundle configs/train.json "${baseline[@]}" "$@"

# the pruned runs write beside the baseline, and read the same test split
for method in taylorfo sauron; do
    mkdir -p "runs/$method"
    cp runs/split.json "runs/$method/split.json"
done

phase 2 "TaylorFO pruning: $taylorfo_text"
bundle "['configs/train.json','configs/prune_taylorfo.json']" --baseline_checkpoint ./models/model_baseline.pt \
    --ckpt_dir ./models/taylorfo --output_dir ./runs/taylorfo "${taylorfo[@]}" "$@" "${taylorfo_extra[@]}"

phase 3 "Sauron pruning, a short DEMO schedule (the paper's runs are far longer): $sauron_text"
bundle "['configs/train.json','configs/prune_sauron.json']" \
    --ckpt_dir ./models/sauron --output_dir ./runs/sauron "${sauron[@]}" "$@" "${sauron_extra[@]}"

phase 4 "evaluating the three models on the held-out test split"
evaluate="['configs/train.json','configs/evaluate.json']"
bundle "$evaluate" --checkpoint ./models/model_baseline.pt "$@"
bundle "$evaluate" --checkpoint ./models/taylorfo/model.pt --output_dir ./runs/taylorfo \
    --eval_output_dir ./eval/taylorfo "$@"
bundle "$evaluate" --checkpoint ./models/sauron/model.pt --output_dir ./runs/sauron --eval_output_dir ./eval/sauron "$@"

phase 5 "segmenting the demo images with the TaylorFO-pruned model (copied to models/model.pt)"
cp models/taylorfo/model.pt models/model.pt
python -m monai.bundle run --config_file configs/inference.json --meta_file configs/metadata.json "${logging[@]}"

phase 6 "comparing the three models (CPU latency is timed now, on this machine, in every installed runtime)"
# 3 alternating rounds of 5 timed passes per model, runtime and size; the ONNX export of each model takes much of it
python -m monai_pruning.report.comparison --bundle_root . --output report --title "$name: demo comparison" \
    --rounds 3 --repeats 5 "${latency_sizes[@]}" \
    --model baseline models/model_baseline.pt eval/case_metrics.csv \
    --model TaylorFO models/taylorfo/model.pt eval/taylorfo/case_metrics.csv \
    --model "Sauron (demo schedule)" models/sauron/model.pt eval/sauron/case_metrics.csv \
    --note "Synthetic demo data (unless --dataset_dir was given): the numbers show the workflow, not clinical performance." \
    --note "baseline: $baseline_text. TaylorFO: $taylorfo_text. Sauron (demo schedule): $sauron_text." \
    "$@"

elapsed=$((SECONDS - started))
printf '\ndemo finished in %d min %02d s\n' $((elapsed / 60)) $((elapsed % 60))
echo "pruned models: $(pwd)/models/taylorfo/model.pt (TaylorFO, also in models/model.pt) and $(pwd)/models/sauron/model.pt"
echo "masks in $(pwd)/predictions, comparison in $(pwd)/report/summary.md"
echo "pack the pruned bundle for a collaborator: python -m monai_pruning.pack_bundle $(pwd) --output ${name}_pruned.zip"
