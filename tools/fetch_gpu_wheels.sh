#!/usr/bin/env bash
# Download, here (where PyPI is reachable), the wheels the GPU machine lacks to execute the notebooks: papermill and
# the Jupyter kernel stack, ipywidgets (~17 MB, Python 3.12, x86-64). The GPU image already has torch, torchvision,
# numpy, matplotlib, pillow, tqdm, pyyaml, requests, aiohttp, click and timm. Then carry `.whl` (git-ignored) with
# tools/gpu_session.sh, which installs them into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  papermill nbclient nbformat ipykernel jupyter_client jupyter_core traitlets pyzmq tornado comm debugpy ipython \
  ipython-pygments-lexers jedi parso prompt_toolkit pexpect ptyprocess stack_data asttokens executing pure_eval \
  decorator matplotlib-inline wcwidth nest-asyncio fastjsonschema jsonschema jsonschema-specifications referencing \
  rpds-py entrypoints tenacity ipywidgets widgetsnbextension jupyterlab_widgets platformdirs
du -sh .whl
