"""2D feature teachers behind one registry: ``labels``, ``efficientnet``, ``clip``, ``dino``."""

from dff_gs.teachers import clip, dino, efficientnet, labels  # noqa: F401  (register themselves; heavy

# libraries -- timm, open_clip -- are imported inside their methods)
from dff_gs.teachers.base import Teacher, get_teacher, register_teacher, teacher_names

__all__ = ["Teacher", "get_teacher", "register_teacher", "teacher_names"]
