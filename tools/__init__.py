"""Developer tooling: run the notebooks (``make demo``), check and strip them (``make strip-notebooks``), write the
Colab cells and README badges, and serve the embedded model locally for tests and benchmarks.

Run from the repository root as ``python -m tools.<module>``. Not part of the installed package (pyproject's
``packages.find`` includes ``ec2er_utils*`` only): the notebooks and ``ec2er_utils`` never import it; it imports
``ec2er_utils``.
"""
