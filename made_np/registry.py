"""Where the core and the trainer find the speed forms of :mod:`made_np.fast`: by name, on first use.

Each speed form is named ``"module:attribute"`` here and imported only when it is first asked
for, so the reference never imports :mod:`made_np.fast` (a reader of the core meets no speed
code, and ``import made_np.model`` loads none), while :mod:`made_np.fast` imports the core
freely: no import circle. Each form is tested equal to its reference (tests/test_sampling.py,
tests/test_train.py).
"""
from __future__ import annotations

import importlib

SPEED_FORMS = {
    "sampler": "made_np.fast.sampler:draw_fast",  # the degree-ordered sampler (sampling.draw_naive)
    "engine": "made_np.fast.engine:FastEngine",  # the fast training engine (train.ReferenceEngine)
}


def speed_form(name: str):
    """The object :data:`SPEED_FORMS` names ``name``, imported now."""
    module, attribute = SPEED_FORMS[name].split(":")
    return getattr(importlib.import_module(module), attribute)
