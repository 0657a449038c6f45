"""configs/demo.py loaded by file path for tests (configs/ is not a package)."""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(variant=None):
    """``get_config(variant)`` of configs/demo.py (paths in it are relative to ROOT)."""
    spec = importlib.util.spec_from_file_location("demo_cfg",
                                                  os.path.join(ROOT, "configs", "demo.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(variant)
