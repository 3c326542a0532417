"""The learned prior (issue 16): a small 3-D convolutional network, trained offline on
classic-codec decodes of cryo-EM maps and of light-microscopy images, that maps a
decode back towards the original at zero bytes; shipped as safetensors in ``weights/``
with a model card.

* :mod:`.net` — the network, its conditioning (codec family, bits per voxel) and weights I/O;
* :mod:`.apply` — tiled inference and the closed-form refit of its head;
* :mod:`.stage` — the stage of a hybrid file (domain choice, adaptation, block flags);
* :mod:`.pairs`, :mod:`.train` — training data and the training loop
  (``benchmarks/train_learned_prior.py`` is the recipe).

Nothing here is imported until used (torch).
"""

#: Domains with shipped weights (``weights/{domain}_{WEIGHTS_VERSION}.safetensors``).
DOMAINS = ("cryoem", "microscopy")
#: Version of the shipped weights (recorded in files and zarr codec configurations).
WEIGHTS_VERSION = "v1"
