"""Datasets: builtin generators and fact sets, upstream benchmarks (hub or local), user files.

Everything produces the contract in :mod:`rankscope.data.types`; :func:`load_dataset` is the
entry point and :func:`list_datasets` the catalogue.
"""

from rankscope.data.answers import extract_number, is_correct, normalize_text
from rankscope.data.registry import DatasetEntry, get_entry, list_datasets, load_dataset
from rankscope.data.sampling import DatasetWarning, sample_examples, split_train_test
from rankscope.data.types import Example, LoadedDataset, TaskInfo

__all__ = [
    "DatasetEntry",
    "DatasetWarning",
    "Example",
    "LoadedDataset",
    "TaskInfo",
    "extract_number",
    "get_entry",
    "is_correct",
    "list_datasets",
    "load_dataset",
    "normalize_text",
    "sample_examples",
    "split_train_test",
]
