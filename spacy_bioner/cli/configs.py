"""``configs``: the base configs and backbone files shipped inside the package."""
from wasabi import msg

from ._util import app


@app.command("configs")
def configs_cli() -> None:
    """List the shipped configs; pass a name (or the printed path) to `train`/`config`."""
    from ..training.config import packaged_configs

    found = packaged_configs()
    msg.divider("Base configs (spacy-bioner train NAME)")
    msg.table([(p.stem, str(p)) for p in found["base"]], header=("name", "path"))
    msg.divider("Backbones (--backbone NAME)")
    rows = []
    for path in found["backbone"]:
        name = next((line.split("=", 1)[1].strip().strip('"') for line in path.read_text(encoding="utf8").splitlines()
                     if line.strip().startswith("backbone")), "")
        rows.append((path.stem, name, str(path)))
    msg.table(rows, header=("name", "model", "path"))
    msg.divider("Entity heads (--head NAME)")
    msg.table([(p.stem, str(p)) for p in found["head"]], header=("name", "path"))
    msg.divider("Adversarial training (--adversarial NAME)")
    msg.table([(p.stem, str(p)) for p in found["adversarial"]], header=("name", "path"))
    msg.divider("Augmentation (--augment NAME)")
    msg.table([(p.stem, str(p)) for p in found["augment"]], header=("name", "path"))
