"""Neural-field building blocks: batched sine MLPs (SIREN) evaluated with ``baddbmm``."""

from voxfield.fields.siren import BatchedSiren, siren_param_count

__all__ = ["BatchedSiren", "siren_param_count"]
