"""``assets``: fetch project.yml assets from an offline mirror, else by URL."""
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer
from wasabi import msg

from ._util import app

MIRROR_ENV = "BIONER_ASSETS_DIR"


def select_assets(config: Dict[str, Any], *, corpus: Optional[str], extra: bool) -> List[Dict[str, Any]]:
    """The assets to fetch: one corpus' files, or all non-extra ones (all with ``extra``)."""
    assets = config.get("assets", [])
    if corpus:
        chosen = [a for a in assets if Path(a["dest"]).parent.name == corpus]
        if not chosen:
            known = sorted({Path(a["dest"]).parent.name for a in assets})
            raise typer.BadParameter(f"no assets for corpus {corpus!r}; known: {', '.join(known)}")
        return chosen
    return [a for a in assets if extra or not a.get("extra", False)]


def fetch_from_mirror(asset: Dict[str, Any], *, project_dir: Path, mirror: Path) -> Optional[Path]:
    """Copy an asset from the mirror (same path below it as below ``assets/``).

    Returns the destination, or None if the mirror lacks the file. A file whose
    checksum differs from project.yml's is an error, not a silent copy.
    """
    from weasel.util import get_checksum

    dest = project_dir / asset["dest"]
    rel = Path(*Path(asset["dest"]).parts[1:])
    source = mirror / rel
    if not source.is_file():
        return None
    checksum = asset.get("checksum")
    if checksum and get_checksum(source) != checksum:
        raise ValueError(f"{source}: checksum {get_checksum(source)} does not match project.yml ({checksum})")
    if not (dest.exists() and checksum and get_checksum(dest) == checksum):
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
    return dest


@app.command("assets")
def assets_cli(
    project_dir: Path = typer.Argument(Path("."), help="Project directory (with project.yml)"),
    corpus: Optional[str] = typer.Option(None, "--corpus", "-c", help="Only this corpus' files"),
    mirror: Optional[Path] = typer.Option(
        None, "--mirror", "-m", help=f"Local folder mirroring the assets (default: ${MIRROR_ENV})"
    ),
    extra: bool = typer.Option(False, "--extra", help="Also fetch assets marked extra"),
) -> None:
    """Fetch corpora: copy from an offline mirror when it has them, else download by URL with checksum."""
    from weasel.cli.assets import fetch_asset
    from weasel.util import load_project_config

    config = load_project_config(project_dir)
    mirror = mirror or (Path(os.environ[MIRROR_ENV]) if os.environ.get(MIRROR_ENV) else None)
    if mirror is not None and not mirror.is_dir():
        msg.warn(f"Mirror {mirror} does not exist; downloading by URL instead")
        mirror = None
    chosen = select_assets(config, corpus=corpus, extra=extra)
    msg.info(f"Fetching {len(chosen)} asset(s)" + (f" (mirror: {mirror})" if mirror else ""))
    for asset in chosen:
        try:
            dest = fetch_from_mirror(asset, project_dir=project_dir, mirror=mirror) if mirror else None
        except ValueError as err:
            msg.fail(str(err))
            raise typer.Exit(1)
        if dest is not None:
            msg.good(f"Copied {asset['dest']} from mirror")
            continue
        fetch_asset(project_dir, asset["url"], project_dir / asset["dest"], asset.get("checksum"))
