"""CIFAR-10, CIFAR-100 and SVHN as uint8 tensors, from wherever they can be found, and a GPU-resident loader.

=================  ===========================================================================================
``sets``           what a data set is (:class:`DatasetInfo`, :class:`ImageSet`) and small-data subsets
``sources``        where the images come from (:func:`load_dataset`), tried in order, loudly offline
``mirrors``        the fast copies (Hugging Face Hub Parquet, archive mirrors) and the checks they must pass
``jpeg_copy``      the study's CIFAR-10 JPEG copy: where it comes from, its content check, fetching it
``download``       one URL to a file: progress, minimum rate, resume, checksum, atomic completion
``cache``          verified splits kept as uint8 arrays under ``<root>/course_cache/`` (second load < 2 s)
``preprocess``     uint8 pixels -> model input (:class:`Preprocessing`), recorded with every run
``loader``         :class:`GPULoader`: the data set on the device, batches augmented there
=================  ===========================================================================================

Tensor conventions: images are ``uint8`` (N, 3, 32, 32) until a :class:`Preprocessing` turns them into ``float32``
(B, 3, 32, 32) on the device; labels are ``int64`` (N,).
"""
from .loader import GPULoader
from .preprocess import RAW, Preprocessing, normalize
from .sets import (DATASETS, SAMPLES_DIR, STAND_IN, DatasetInfo, DataUnavailableError, ImageSet,
                   OfflineSamplesWarning, OverlappingTestSetWarning, check_dataset_name, check_test_set,
                   first_of_each_class, hold_out, subset, take)
from .sources import SOURCES, load_cifar10_jpeg, load_dataset, load_samples

__all__ = ["DatasetInfo", "DATASETS", "ImageSet", "DataUnavailableError", "OfflineSamplesWarning",
           "OverlappingTestSetWarning", "check_test_set", "STAND_IN",
           "check_dataset_name", "load_dataset", "load_cifar10_jpeg", "load_samples", "SOURCES", "subset", "hold_out", "take",
           "first_of_each_class", "Preprocessing", "RAW", "normalize", "GPULoader", "SAMPLES_DIR"]
