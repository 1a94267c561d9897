"""``package-best``: the ``ok`` run of a sweep with the best dev F1, as a wheel (:mod:`spacy_bioner.packaging.wheel`)."""
from pathlib import Path
from typing import Any, Dict

from ..errors import ConfigValueError


def package_best(output_dir: Path, packages_dir: Path, **kwargs: Any) -> Dict[str, Any]:
    """Package the ``ok`` run with the best dev F1 of the sweep in ``output_dir``.

    output_dir (Path): the sweep's folder (with ``sweep.jsonl``).
    packages_dir (Path): where the wheels go.
    kwargs: as :func:`~spacy_bioner.packaging.wheel.package_run` takes them (name, version, n_bootstrap…).
    RETURNS (Dict[str, Any]): ``wheel``, ``spacy_bioner_wheel``, ``package``, ``card`` and ``record``.
    """
    from ..packaging.wheel import package_run
    from .sweep import SweepResults
    from .sweep_report import best_run

    results = SweepResults(output_dir)
    if not results.path.exists():
        raise FileNotFoundError(f"{output_dir}: no {results.path.name} (run `spacy-bioner sweep GRID {output_dir}`)")
    best = best_run(results.records())
    if best is None:
        raise ConfigValueError(f"{results.path}: no run finished ok, so there is no best model to package")
    return package_run(best, packages_dir, **kwargs)
