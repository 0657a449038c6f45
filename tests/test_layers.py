"""The package's import rules: lab and demo training are never imported by the library, and
entry points do not reach into the pickle reader to name its error."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "jaxfair")


def imports(path: str) -> set[str]:
    with open(path) as f:
        tree = ast.parse(f.read())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def modules():
    for d, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                yield os.path.relpath(path, ROOT).replace(os.sep, "/"), imports(path)


def test_nothing_outside_lab_imports_lab():
    bad = [m for m, names in modules() if not m.startswith("jaxfair/lab/")
           and any(n == "jaxfair.lab" or n.startswith("jaxfair.lab.") for n in names)]
    assert not bad


def test_library_does_not_import_demo():
    # demo/ (the world and its training) and lab/ may; entry points of demo/ are demo's own.
    # The world's definition and its exact ground truth of the demo generator's latents
    # (demo.world, demo.latent) are data a report may judge demo datasets by; the training
    # code is not.
    truth = ("jaxfair.demo.world", "jaxfair.demo.latent")
    bad = [m for m, names in modules() if not m.startswith(("jaxfair/demo/", "jaxfair/lab/"))
           and any(n.startswith("jaxfair.demo") and n not in truth and n != "jaxfair.demo"
                   for n in names)]
    assert not bad


def test_entry_points_do_not_import_the_pickle_reader():
    entry = ("jaxfair/generate.py", "jaxfair/sample.py", "jaxfair/directions.py",
             "jaxfair/benchmark.py", "jaxfair/search/__main__.py", "jaxfair/report/__main__.py",
             "jaxfair/lab/__main__.py")
    bad = [m for m, names in modules() if m in entry
           and any("torch_pickle" in n for n in names)]
    assert not bad
