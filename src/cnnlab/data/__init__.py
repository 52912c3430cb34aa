"""Data: named datasets (located or downloaded), image folders, device-resident batches."""

from cnnlab.data.augment import FLIP_KEEPS_LABEL, Augment, default_augment
from cnnlab.data.dataset import ImageDataset, convert_images, stratified_split
from cnnlab.data.folder import load_folder, load_image
from cnnlab.data.idx import read_idx, read_idx_pair, write_idx
from cnnlab.data.loader import TensorBatches
from cnnlab.data.mix import BatchMix
from cnnlab.data.sources import MINI, SOURCES, candidate_dirs, fetch, load_dataset

DATASETS = (MINI, *SOURCES)  # the names load_dataset takes besides folder:PATH

__all__ = [
    "Augment", "BatchMix", "DATASETS", "FLIP_KEEPS_LABEL", "ImageDataset", "TensorBatches", "candidate_dirs",
    "convert_images", "default_augment", "fetch", "load_dataset", "load_folder", "load_image",
    "read_idx", "read_idx_pair", "stratified_split", "write_idx",
]
