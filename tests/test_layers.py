"""The package's import rules: no module imports a higher layer, lab and demo training are
never imported by the library, and entry points do not reach into the pickle reader to name
its error."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "jaxfair")


def imports(path: str, known: set[str] | None = None) -> set[str]:
    """Names a file imports: ``from m import a`` gives m and m.a, or, with ``known``
    modules, m.a when that is a module and m otherwise."""
    with open(path) as f:
        tree = ast.parse(f.read())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            subs = {f"{node.module}.{a.name}" for a in node.names}
            if known is None:
                out |= {node.module} | subs
            else:  # names that are not modules are attributes of node.module
                out |= subs & known
                if subs - known:
                    out.add(node.module)
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
           and any("torch_pickle" in n or "convert.guard" in n for n in names)]
    assert not bad


# Layers, low to high; a module may import its own layer or lower ones. The most specific
# prefix names a module's layer. io.loading and the package's own API (``jaxfair``) turn
# checkpoint directories and raw files into models, so they sit above the importers; the
# dataset format is names on disk, usable from anywhere; the demo world and the exact ground
# truth of its latents are data a report may judge demo datasets by.
LAYERS = (
    ("jaxfair.errors", "jaxfair.keys", "jaxfair.identity", "jaxfair.train_loop",
     "jaxfair.dataset.format"),
    ("jaxfair.io",),
    ("jaxfair.models",),
    ("jaxfair.judge", "jaxfair.demo.world", "jaxfair.demo.latent"),
    ("jaxfair.convert",),
    ("jaxfair", "jaxfair.io.loading"),
    ("jaxfair.search", "jaxfair.sampling", "jaxfair.distribution"),
    ("jaxfair.dataset",),
    ("jaxfair.pipeline",),
    ("jaxfair.report",),
    ("jaxfair.cli", "jaxfair.generate", "jaxfair.sample", "jaxfair.directions",
     "jaxfair.benchmark", "jaxfair.export", "jaxfair.peer"),
    ("jaxfair.demo", "jaxfair.lab"),
)


def layer(name: str) -> int:
    """Layer of a module (``__main__`` modules are entry points wherever they live)."""
    if name.endswith(".__main__") and not name.startswith(("jaxfair.demo", "jaxfair.lab")):
        return len(LAYERS) - 2
    best, found = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > best:
                best, found = len(p), i
    assert found is not None, f"{name} is in no layer"
    return found


def module_graph() -> dict[str, set[str]]:
    """Module -> the jaxfair modules it imports (function-level imports included)."""
    paths = {}
    for d, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                paths[name.removesuffix(".__init__")] = path
    graph = {}
    for name, path in paths.items():
        deps = imports(path, set(paths))
        graph[name] = {d for d in deps if d == "jaxfair" or d.startswith("jaxfair.")}
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                  if layer(d) > layer(m))


def test_no_module_imports_a_higher_layer():
    graph = module_graph()
    assert len(graph) > 100
    assert upward_imports(graph) == []


def test_the_layer_check_sees_an_upward_import():
    assert upward_imports({"jaxfair.dataset.writer": {"jaxfair.pipeline.worker"},
                           "jaxfair.io.atomic": {"jaxfair.errors"}}) == [
        "jaxfair.dataset.writer -> jaxfair.pipeline.worker"]
    assert upward_imports({"jaxfair.convert.standins": {"jaxfair.io.loading"}})
    assert upward_imports({"jaxfair.search.engine": {"jaxfair.demo.fit_generator"}})
