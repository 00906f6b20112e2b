"""avlearn: audio-visual learning in PyTorch.

Layers, each importing only from those before it: ``io`` -> ``audio``/``video`` -> ``data`` -> ``models``
-> ``metrics``/``losses`` -> ``tasks`` -> ``pipelines`` -> ``cli``. See README.md.
"""

__version__ = "0.1.0"
