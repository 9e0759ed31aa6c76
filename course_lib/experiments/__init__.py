"""The course's experiments: every model the notebooks need, trained once, recorded, and reused.

=================  ===========================================================================================
``runs``           one run: :class:`RunSpec`, its budget and identity, :func:`train_run`, :func:`get_record`
``records``        the JSON records (your ``records/`` and the course's records of record), written atomically
``plan``           which runs each chapter needs under each profile
``provenance``     hardware, software and commit of a result; the scale of a notebook's outputs
``course_models``  the course's trained models, which the analysis notebooks open by default
``budget``         what a notebook will fetch, load and train and how long that takes, said before anything runs
``study``          the CPU study of record (500 CIFAR-10 images per class, all 10,000 test images) and its pilot
``queue``          runs in priority order against a deadline, results written out at once (GPU loans)
``notebooks``      papermill re-execution of the notebooks
``__main__``       the command line: ``python -m course_lib.experiments list|run|notebooks``
=================  ===========================================================================================
"""
from .plan import (CHAPTERS, DRLOC_PAIRS, DRLOC_WEIGHTS, NOTEBOOKS, comparison_specs, contrast_seeds, contrast_specs,
                   curve_specs, drloc_ablation, drloc_specs, notebook_specs, plan, scale_box)
from .budget import at_hand, available, open_record, open_run, planned_runs, training_plan
from .course_models import CourseModelUnavailable, course_model, course_model_for
from .provenance import describe_scale, describe_setting, environment_summary
from .records import RECORDS_OF_RECORD, find_record, load_records, records_dir
from .runs import RunResult, RunSpec, get_record, load_data, prepare, train_run, training_config


__all__ = ["RunSpec", "RunResult", "train_run", "get_record", "prepare", "load_data", "training_config",
           "load_records", "find_record", "records_dir", "RECORDS_OF_RECORD", "plan", "comparison_specs",
           "drloc_specs", "drloc_ablation", "curve_specs", "contrast_specs", "contrast_seeds", "CHAPTERS", "NOTEBOOKS",
           "notebook_specs", "scale_box",
           "DRLOC_WEIGHTS", "DRLOC_PAIRS", "training_plan", "at_hand",
           "planned_runs", "open_run", "open_record", "available", "course_model", "course_model_for",
           "CourseModelUnavailable",
           "environment_summary", "describe_setting", "describe_scale"]
