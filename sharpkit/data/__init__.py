"""Datasets (a registry of on-disk layouts) and the deterministic on-device loader."""
from .base import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, CorruptedImageDataset, ImageDataset
from .datasets import DATASETS, data_root, list_datasets, load_clean, load_corrupted, load_dataset, register_dataset
from .loader import AUGMENTATIONS, DeviceLoader, default_augmentation, derived_generator, subset_indices

__all__ = [
    "AUGMENTATIONS", "CIFAR_MEAN", "CIFAR_STD", "DATASETS", "IMAGENET_MEAN", "IMAGENET_STD",
    "CorruptedImageDataset", "DeviceLoader", "ImageDataset", "data_root", "default_augmentation",
    "derived_generator", "list_datasets", "load_clean", "load_corrupted", "load_dataset", "register_dataset",
    "subset_indices",
]
