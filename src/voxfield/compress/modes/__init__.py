"""Modes that wrap any method: what a file must guarantee rather than how it is coded.

* :mod:`~voxfield.compress.modes.ebound` — the ``ebound`` section: a residual quantised so
  that every voxel lies within ``E`` of the original, and its search of the base ratio;
* :mod:`~voxfield.compress.modes.bounded` — error-bounded compression with any registered
  method (``--max-error`` / ``--rel-error``);
* :mod:`~voxfield.compress.modes.science` — the smallest file that keeps the map's FSC
  resolution (``--fsc-target``);
* :mod:`~voxfield.compress.modes.guidance` — application guidance of the fits
  (segmentation or MS-SSIM losses).
"""
