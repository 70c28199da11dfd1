"""The GPU and Colab run machinery: the paper's set-up in one command, and what a Colab runtime calls.

Not part of the learner's package (``ec2er_utils``, which the notebooks import): it is not installed, and it is run
from the repository root, where ``colab`` is importable (``python -m colab.launch ...``; a notebook's Colab
bootstrap cell puts the clone first on ``sys.path``, then ``from colab import install``).

- :mod:`colab.launch`: the one command, chapters 00-06 with the paper's recipes, resumable.
- :mod:`colab.runtime`: GPU check, Google Drive, vLLM's own venv and server (start, wait, stop), papermill runs.
- :mod:`colab.install`: the pinned install into Colab's own Python (standard library only).
- :mod:`colab.recipes`: the chapters' recipes in ``recipes/`` read back.
- ``colab/smoke.py``: the whole chain at a tiny size on any CUDA GPU; ``colab/ec2er_colab.ipynb``: the launcher.

Nothing is imported here: the bootstrap cell imports :mod:`colab.install` before anything else is installed.
"""
