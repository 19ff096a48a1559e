"""
Dataset readers, deterministic case splits and synthetic demo phantoms for the three bundled tasks.

Accepted layouts, read as distributed:

- polyp: Kvasir-SEG (``images/``, ``masks/``), CVC-ClinicDB (``Original/``, ``Ground Truth/``), PolypGen
  (``data_Cn/images_Cn/``, ``data_Cn/masks_Cn/``);
- kidney: KiTS19/21/23 (``case_XXXXX/imaging.nii.gz`` + ``segmentation.nii.gz``, optionally under ``data/``);
- brain: Medical Segmentation Decathlon (``dataset.json``), ATLAS v2.0 (``sub-*/ses-*/anat/``).

:func:`prepare_task_data` is the bundles' entry point; the readers, phantom writers and the threshold baseline are
public so that tests and users can call them directly.
"""

from __future__ import annotations

from monai_pruning.data.brain_layouts import read_atlas, read_msd, read_msd_metadata
from monai_pruning.data.brain_phantoms import brain_phantom, write_brain_phantoms
from monai_pruning.data.errors import DatasetError
from monai_pruning.data.file_checks import check_cases, inspect_file
from monai_pruning.data.kidney_phantoms import kidney_phantom, write_kidney_phantoms
from monai_pruning.data.image_folder import list_image_files
from monai_pruning.data.kits_layout import read_kits
from monai_pruning.data.layouts import LAYOUTS, TASK_LAYOUTS, detect_layout
from monai_pruning.data.polyp_layouts import read_cvc_clinicdb, read_kvasir_seg
from monai_pruning.data.polypgen_layout import read_polypgen
from monai_pruning.data.polyp_phantoms import polyp_phantom, write_polyp_phantoms
from monai_pruning.data.splits import load_split, split_cases
from monai_pruning.data.task_data import prepare_task_data
from monai_pruning.data.threshold_baseline import best_threshold_dice

__all__ = [
    "DatasetError",
    "prepare_task_data",
    "list_image_files",
    "read_kvasir_seg",
    "read_cvc_clinicdb",
    "read_polypgen",
    "read_kits",
    "read_msd",
    "read_msd_metadata",
    "read_atlas",
    "detect_layout",
    "LAYOUTS",
    "TASK_LAYOUTS",
    "check_cases",
    "inspect_file",
    "split_cases",
    "load_split",
    "write_polyp_phantoms",
    "write_kidney_phantoms",
    "write_brain_phantoms",
    "polyp_phantom",
    "kidney_phantom",
    "brain_phantom",
    "best_threshold_dice",
]
