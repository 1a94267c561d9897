"""The package's layers: every module imports only from layers below its own (or from its own
package), and no two modules import each other, directly or round a longer loop.

Imports are read from the source (``ast``), including those inside functions (the
lazy imports that keep torch out of light commands are imports all the same).
"""
import ast
from pathlib import Path
from typing import Dict, Iterable, List, Set, Tuple

import pytest

from .conftest import PROJECT

PACKAGE = "spacy_bioner"
#: Layers from the bottom up. A module may import from a lower layer, and from its own
#: package (group); a sibling (another group on the same layer) or a higher layer is an error.
LAYERS: List[Tuple[str, ...]] = [
    ("", "types", "errors", "gpu"),  # "": the package root (``__version__``; the rest is a lazy facade)
    ("corpus",),
    ("models",),
    ("pipeline",),
    ("training", "evaluation"),
    ("packaging",),
    ("experiments", "annotate"),
    ("cli",),
    ("__main__",),
]
#: The bottom layer is one group: its modules may import each other.
BASE = set(LAYERS[0])


def group_of(module: str) -> str:
    """``spacy_bioner.models.spans`` → ``models``; the base modules share the group ``base``."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    return "base" if top in BASE else top


def rank_of(module: str) -> int:
    top = group_of(module)
    top = "" if top == "base" else top
    for rank, layer in enumerate(LAYERS):
        if top in layer:
            return rank
    raise AssertionError(f"{module}: its package {top!r} is in no layer of tests/test_layers.py (add it to LAYERS)")


def modules(root: Path) -> Dict[str, Path]:
    """Every module of the package under ``root``, by dotted name (packages by their ``__init__``)."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(path: Path, module: str, known: Set[str]) -> Set[str]:
    """The package's modules that ``module`` imports anywhere in its source (resolved to modules)."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: Set[str] = set()

    def add(name: str) -> None:
        # the longest known module that ``name`` is or lies in (``a.b.func`` → ``a.b``)
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            for alias in node.names:  # ``from . import app`` / ``from ..pipeline import adversarial``
                add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
    found.discard(module)
    return found


def import_graph(root: Path) -> Dict[str, Set[str]]:
    found = modules(root)
    known = set(found)
    return {module: imports(path, module, known) for module, path in found.items()}


def layer_violations(graph: Dict[str, Set[str]]) -> List[str]:
    """``a -> b`` for every import of a higher layer or of a sibling on the same layer."""
    bad = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            same_group = group_of(module) == group_of(target)
            if not same_group and rank_of(target) >= rank_of(module):
                where = "a sibling layer" if rank_of(target) == rank_of(module) else "a higher layer"
                bad.append(f"{module} -> {target} ({where})")
    return bad


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(out)


def test_every_package_has_a_layer():
    for module in modules(PROJECT):
        rank_of(module)


def test_each_layer_imports_only_from_below():
    bad = layer_violations(import_graph(PROJECT))
    assert not bad, "imports against the layers (corpus < models < pipeline < training, evaluation < " \
                    "packaging < experiments, annotate < cli):\n" + "\n".join(bad)


def test_no_import_cycles():
    found = cycles(import_graph(PROJECT))
    assert not found, "modules that import each other:\n" + "\n".join(" <-> ".join(c) for c in found)


# ------------------------------------------------------------------ the checks themselves can fail
def write_package(root: Path, files: Dict[str, str]) -> Path:
    for name, text in {"__init__.py": "", **files}.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf8")
    return root


@pytest.mark.parametrize("files,expected", [
    # training imports evaluation inside a function (the old sweep): a sibling
    ({"training/__init__.py": "", "training/sweep.py": "def f():\n    from ..evaluation.predict import x\n",
      "evaluation/__init__.py": "", "evaluation/predict.py": ""},
     ["spacy_bioner.training.sweep -> spacy_bioner.evaluation.predict (a sibling layer)"]),
    # pipeline imports training (the old adversarial hook), absolute import
    ({"pipeline/__init__.py": "", "pipeline/adversarial.py": "import spacy_bioner.training.adversarial as adv\n",
      "training/__init__.py": "", "training/adversarial.py": "from ..errors import E\n", "errors.py": ""},
     ["spacy_bioner.pipeline.adversarial -> spacy_bioner.training.adversarial (a higher layer)"]),
    # from a package import a submodule; base modules and the own package are fine
    ({"corpus/__init__.py": "", "corpus/noise.py": "from ..models import spans\nfrom .. import __version__\n",
      "models/__init__.py": "", "models/spans.py": "from ..corpus import noise\nfrom ..gpu import g\n", "gpu.py": ""},
     ["spacy_bioner.corpus.noise -> spacy_bioner.models.spans (a higher layer)"]),
])
def test_layer_check_finds_bad_imports(tmp_path, files, expected):
    assert layer_violations(import_graph(write_package(tmp_path, files))) == expected


def test_cycle_check_finds_cycles(tmp_path):
    root = write_package(tmp_path, {
        "training/__init__.py": "", "training/sweep.py": "def run():\n    from .ray_sweep import run_on_ray\n",
        "training/ray_sweep.py": "from .sweep import RunSpec\n", "training/run.py": "from . import sweep\n",
        "cli/__init__.py": "from . import train\n", "cli/train.py": "from . import app\n",
    })
    assert cycles(import_graph(root)) == [["spacy_bioner.cli", "spacy_bioner.cli.train"],
                                          ["spacy_bioner.training.ray_sweep", "spacy_bioner.training.sweep"]]
