"""Light commands start fast: `import spacy_bioner` imports nothing heavy, and
convert / export / stats / score never import torch (checked in a real process:
the module list at exit)."""
import json
import subprocess
import sys

import pytest

GOLD = "BRCA1\tB-Gene\nmutations\tO\ncause\tO\nbreast\tB-Disease\ncancer\tI-Disease\n\n"
RUN_CLI = """
import json, sys
from spacy_bioner.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def modules_after(code: str, args, cwd):
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd)
    line = next((x for x in proc.stderr.splitlines() if x.startswith("MODULES ")), None)
    assert line is not None, proc.stderr[-3000:]
    return proc, set(json.loads(line[len("MODULES "):]))


def test_import_spacy_bioner_is_light(tmp_path):
    code = ("import sys, json, spacy_bioner, spacy_bioner.cli\n"
            "sys.stderr.write('MODULES ' + json.dumps(sorted(sys.modules)) + '\\n')")
    _, modules = modules_after(code, [], tmp_path)
    assert "spacy_bioner.cli.train" in modules  # the commands are registered…
    assert not {"spacy", "torch", "transformers", "spacy_transformers", "thinc"} & modules  # …lazily


@pytest.mark.parametrize("command", ["convert", "export", "stats", "score"])
def test_light_commands_never_import_torch(command, tmp_path):
    (tmp_path / "gold.tsv").write_text(GOLD, encoding="utf8")
    subprocess.run([sys.executable, "-m", "spacy_bioner", "convert", "gold.tsv", "gold.spacy"], cwd=tmp_path,
                   check=True, capture_output=True)
    args = {"convert": ["convert", "gold.tsv", "out.spacy"], "export": ["export", "gold.spacy", "back.tsv"],
            "stats": ["stats", "gold.spacy"], "score": ["score", "gold.tsv", "gold.spacy", "--bootstrap", "10"]}
    proc, modules = modules_after(RUN_CLI, args[command], tmp_path)
    expected = {"convert": "no repairs needed", "export": "Wrote", "stats": "documents", "score": "Scored"}[command]
    assert expected in proc.stdout, proc.stdout + proc.stderr
    assert "spacy" in modules  # the command really ran
    assert not {m for m in modules if m == "torch" or m.startswith("torch.")}, "torch was imported"
    assert "transformers" not in modules and "spacy_transformers" not in modules
