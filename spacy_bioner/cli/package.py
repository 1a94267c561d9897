"""``package``: a trained pipeline as a pip-installable wheel, with spacy-bioner's own wheel beside it."""
from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from ._util import app, friendly_errors


@app.command("package")
def package_cli(
    model: Path = typer.Argument(..., help="A trained pipeline folder, e.g. training/demo/model-best"),
    packages_dir: Path = typer.Argument(Path("packages"), help="Where spacy package writes <lang>_<name>-<version>/"),
    name: str = typer.Option(..., "--name", help="Package name without the language prefix, e.g. bioner_ncbi_minilm"),
    version: str = typer.Option("0.1.0", "--version", help="Package version"),
    own_wheel: bool = typer.Option(True, "--own-wheel/--no-own-wheel",
                                   help="Also build spacy-bioner's wheel into the same dist folder"),
    scores: Optional[List[Path]] = typer.Option(None, "--scores", help="A pipeline trained on a corpus mix: "
                                                "`evaluate MODEL MIX.yml -o FILE` results for its model card "
                                                "(repeat for in-corpus and held-out)"),
) -> None:
    """Package a pipeline with `spacy package --build wheel`, leaving training-only components out.

    A pipeline trained on a corpus mix gets a model card (README.md and meta.json): the mix, its label maps
    and the scores given with --scores.

    The model wheel requires spacy-bioner, which is not on the package index, so
    spacy-bioner's wheel is written into the same dist folder; install both with
    `pip install --find-links PACKAGES/<lang>_NAME-VERSION/dist <lang>_NAME`.
    """
    from ..packaging.wheel import installed_torch_pin, package_pipeline

    with friendly_errors():
        out = package_pipeline(model, packages_dir, name=name, version=version, own_wheel=own_wheel,
                               scores=list(scores or []))
    if out["dropped"]:
        msg.info(f"Left out training-only components: {', '.join(out['dropped'])}")
    msg.good(f"Model wheel: {out['wheel']}")
    if out["card"]:
        msg.info(f"Model card: the mix {out['card']['mix']['mix']} ({len(out['card']['mix']['corpora'])} corpora) "
                 f"and {len(out['card']['scores'])} score file(s)")
    if out["spacy_bioner_wheel"]:
        msg.good(f"spacy-bioner wheel: {out['spacy_bioner_wheel']}")
    else:
        msg.warn("spacy-bioner's own wheel was not built (not a clone, or --no-own-wheel): put it in "
                 f"{out['dist']} before installing")
    # plain echo, not wasabi: a wrapped command could not be copied
    typer.echo(f"Install (where torch is missing, first the build you want, e.g. `pip install {installed_torch_pin()}`: "
               "a bare torch requirement may pull GBs of CUDA wheels):")
    typer.echo(f"  {out['install']}")
    typer.echo(f"then: spacy.load(\"{out['package']}\")")
