"""2D feature teachers behind one registry: ``labels``, ``efficientnet``, ``clip``, ``dino``."""

from dff_gs.teachers import labels  # noqa: F401  (registers)
from dff_gs.teachers.base import Teacher, get_teacher, register_teacher, teacher_names

__all__ = ["Teacher", "get_teacher", "register_teacher", "teacher_names"]
