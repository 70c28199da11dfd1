"""ec2er_utils: the logic behind the ec2er notebooks (From Emotion Classification to Emotional Reasoning).

Notebooks narrate; this package computes. Submodules are imported on demand so that ``import ec2er_utils``
stays fast and does not load torch.
"""

__version__ = "0.1.0"
