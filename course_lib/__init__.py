"""course_lib: the code behind the course "ViT on small datasets" (one concept per module).

- ``settings``: the COURSE_* environment variables, checked; ``runtime``: device, precision, seeding, eval mode;
  ``files``: atomic writes, named corrupt files, run locks
- ``profiles``: training budgets; ``data``: the data sets, their sources, preprocessing and the GPU loader;
  ``augment``: batch augmentations on the device
- ``models``: ViT, ResNet-18, a hybrid, with configs and labels; ``recipes``: how to train; ``train``: the loop;
  ``checkpoints``: a run's identity, resume and atomic saves; ``history``: what a run produces;
  ``drloc``: the DRLoc auxiliary task (an extra loss for the loop)
- ``hooks``: activations by layer name; ``rollout``: attention rollout; ``locality``: mean attention distance;
  ``cka``: centred kernel alignment
- ``experiments``: runs, records, plans, the GPU queue and the command line; ``stats``: intervals and verdicts;
  ``report``: the results' tables and verdicts; ``papers``: published numbers and their sources
- ``plots``, ``tables``, ``widgets``: figures, tables and explorers; ``exercises``: answer checks
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("course_lib")
except PackageNotFoundError:   # run from a source tree without installing (e.g. the GPU machine)
    __version__ = "source tree"
