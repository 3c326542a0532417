"""Particle orientations: RELION Euler angles, cryoSPARC rotation vectors and cryoDRGN matrices.

Internal convention (the one of cryoDRGN's pose pickles)
--------------------------------------------------------
A pose is a rotation matrix ``R`` (``(N, 3, 3)``) and an in-plane shift ``t`` in pixels
(``(N, 2)``; cryoDRGN's pickles store ``t / D``, a fraction of the box).

* From RELION Euler angles ``(rot, tilt, psi)`` (ZYZ, degrees), ``R`` is **exactly RELION's
  own** ``Euler_angles2matrix(rot, tilt, psi)`` matrix ``A``. With ``Rz``/``Ry`` the usual
  active (right-handed) rotations about z/y, this is
  ``R = Rz(-psi) @ Ry(-tilt) @ Rz(-rot) = (Rz(rot) @ Ry(tilt) @ Rz(psi)).T``, i.e. the
  *transpose* of the intrinsic-ZYZ rotation ``scipy.spatial.transform.Rotation.from_euler(
  "ZYZ", [rot, tilt, psi], degrees=True)``. It equals what cryoDRGN's ``parse_pose_star``
  writes (``utils.R_from_relion``: ``Ry(psi) Rb(tilt) Ra(rot)`` with the sign flips of the
  entries (0,1), (1,0), (1,2), (2,1)); no extra transpose is applied there.
* From a cryoSPARC rotation vector (``alignments3D/pose``, axis × angle in radians) ``R`` is
  the **transpose** of the Rodrigues matrix ``exp([v]×)`` (as cryoDRGN's
  ``parse_pose_csparc``: ``lie_tools.expmap`` then ``.T``).
* Shifts are taken **with their sign as stored**: ``t = (rlnOriginX, rlnOriginY)`` pixels,
  or ``(rlnOriginXAngst, rlnOriginYAngst) / pixel size``; ``t = alignments3D/shift`` for
  cryoSPARC (pixels). cryoDRGN does the same (no sign flip) before dividing by ``D``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["euler_to_rot", "rot_to_euler", "rotvec_to_rot", "rot_to_rotvec", "csparc_pose_to_rot"]


def euler_to_rot(euler_deg: np.ndarray) -> np.ndarray:
    """Rotation matrices from RELION Euler angles.

    ``euler_deg``: ``(..., 3)`` array of ``(rlnAngleRot, rlnAngleTilt, rlnAnglePsi)`` in
    degrees (ZYZ). Returns ``(..., 3, 3)`` float64 matrices in cryoDRGN's convention, which is
    RELION's ``Euler_angles2matrix`` (see the module docstring).
    """
    e = np.deg2rad(np.asarray(euler_deg, dtype=np.float64))
    if e.shape[-1] != 3:
        raise ValueError(f"Euler angles must have a last axis of 3, got shape {e.shape}")
    ca, sa = np.cos(e[..., 0]), np.sin(e[..., 0])  # rot
    cb, sb = np.cos(e[..., 1]), np.sin(e[..., 1])  # tilt
    cg, sg = np.cos(e[..., 2]), np.sin(e[..., 2])  # psi
    r = np.empty(e.shape[:-1] + (3, 3), dtype=np.float64)
    r[..., 0, 0] = cg * cb * ca - sg * sa
    r[..., 0, 1] = cg * cb * sa + sg * ca
    r[..., 0, 2] = -cg * sb
    r[..., 1, 0] = -sg * cb * ca - cg * sa
    r[..., 1, 1] = -sg * cb * sa + cg * ca
    r[..., 1, 2] = sg * sb
    r[..., 2, 0] = sb * ca
    r[..., 2, 1] = sb * sa
    r[..., 2, 2] = cb
    return r


def rot_to_euler(rot: np.ndarray) -> np.ndarray:
    """RELION Euler angles ``(rot, tilt, psi)`` in degrees from matrices made by :func:`euler_to_rot`.

    ``tilt`` is in ``[0, 180]``, ``rot`` and ``psi`` in ``(-180, 180]``. At the poles
    (``tilt`` 0 or 180) only ``rot ± psi`` is defined: ``psi`` is set to 0 there.
    ``euler_to_rot(rot_to_euler(R))`` gives back ``R`` for any rotation ``R``.
    """
    r = np.asarray(rot, dtype=np.float64)
    if r.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must be (..., 3, 3), got shape {r.shape}")
    sb = np.hypot(r[..., 2, 0], r[..., 2, 1])
    tilt = np.arctan2(sb, r[..., 2, 2])
    regular = sb > 1e-6
    rot_a = np.where(regular, np.arctan2(r[..., 2, 1], r[..., 2, 0]), 0.0)
    psi = np.where(regular, np.arctan2(r[..., 1, 2], -r[..., 0, 2]), 0.0)
    # poles: tilt = 0 -> R = Rz(-(rot + psi)); tilt = 180 -> R00 = -cos(rot - psi), R01 = sin(psi - rot)
    north = ~regular & (r[..., 2, 2] > 0)
    south = ~regular & (r[..., 2, 2] <= 0)
    rot_a = np.where(north, np.arctan2(r[..., 0, 1], r[..., 0, 0]), rot_a)
    rot_a = np.where(south, np.arctan2(-r[..., 0, 1], -r[..., 0, 0]), rot_a)
    out = np.rad2deg(np.stack([rot_a, tilt, psi], axis=-1))
    # (-180, 180]
    out[..., 0] = np.where(out[..., 0] <= -180.0, out[..., 0] + 360.0, out[..., 0])
    out[..., 2] = np.where(out[..., 2] <= -180.0, out[..., 2] + 360.0, out[..., 2])
    return out


def _hat(v: np.ndarray) -> np.ndarray:
    k = np.zeros(v.shape[:-1] + (3, 3), dtype=np.float64)
    k[..., 0, 1], k[..., 0, 2] = -v[..., 2], v[..., 1]
    k[..., 1, 0], k[..., 1, 2] = v[..., 2], -v[..., 0]
    k[..., 2, 0], k[..., 2, 1] = -v[..., 1], v[..., 0]
    return k


def rotvec_to_rot(v: np.ndarray) -> np.ndarray:
    """Rodrigues formula: ``(..., 3)`` rotation vectors (axis × angle, radians) to ``(..., 3, 3)``
    matrices ``exp([v]×)`` (active, right-handed)."""
    v = np.asarray(v, dtype=np.float64)
    theta = np.linalg.norm(v, axis=-1)
    safe = np.where(theta > 1e-12, theta, 1.0)
    k = _hat(v / safe[..., None])
    s = np.where(theta > 1e-12, np.sin(theta), 0.0)[..., None, None]
    c = np.where(theta > 1e-12, 1.0 - np.cos(theta), 0.0)[..., None, None]
    return np.eye(3) + s * k + c * (k @ k)


def rot_to_rotvec(rot: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rotvec_to_rot` (angle in ``[0, π]``)."""
    from scipy.spatial.transform import Rotation

    r = np.asarray(rot, dtype=np.float64)
    return Rotation.from_matrix(r.reshape(-1, 3, 3)).as_rotvec().reshape(r.shape[:-2] + (3,))


def csparc_pose_to_rot(pose: np.ndarray) -> np.ndarray:
    """cryoSPARC ``alignments3D/pose`` rotation vectors to matrices in cryoDRGN's convention
    (the transpose of the Rodrigues matrix, as cryoDRGN's ``parse_pose_csparc``)."""
    return np.swapaxes(rotvec_to_rot(pose), -1, -2)
