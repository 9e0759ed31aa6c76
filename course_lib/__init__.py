"""course_lib: the code behind the course "ViT on small datasets".

Modules (one concept each): ``profiles`` (training budgets), ``data`` (data sets and the GPU-resident loader),
``models`` (ViT, ResNet-18, a hybrid), ``train`` (the one training loop), ``drloc`` (the DRLoc auxiliary task),
``hooks`` (collect intermediate activations), ``rollout`` (attention rollout), ``cka`` (centred kernel alignment),
``plots`` and ``widgets`` (figures), ``exercises`` (answer checks), ``experiments`` (the runner).
"""
__version__ = "0.1.0"
