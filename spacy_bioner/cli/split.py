"""``split``: a corpus into train/dev/test (or k folds) by document, stratified by entity type, seeded."""
from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from ._util import app, fail, friendly_errors


def parse_ratios(text: str) -> List[float]:
    """``0.8,0.1,0.1`` → [0.8, 0.1, 0.1]; BadParameter unless 2 or 3 non-negative numbers summing to 1."""
    try:
        ratios = [float(x) for x in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{text!r}: comma-separated numbers, e.g. 0.8,0.1,0.1", param_hint="--ratios")
    if len(ratios) not in (2, 3) or any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise typer.BadParameter(f"{text!r}: 2 (train,test) or 3 (train,dev,test) non-negative shares summing to 1",
                                 param_hint="--ratios")
    return ratios


@app.command("split")
def split_cli(
    input_path: Path = typer.Argument(..., help="Corpus: IOB/CoNLL file or folder, .spacy, or standoff "
                                      "(PubTator, BioC, brat)"),
    output_dir: Path = typer.Argument(..., help="Folder for train/dev/test.spacy (or fold_K/) and split.json"),
    ratios: str = typer.Option("0.8,0.1,0.1", "--ratios", help="Shares of train,dev,test (or train,test)"),
    folds: int = typer.Option(0, "--folds", "-k", help="Instead: K folds, fold_K/{train,dev,test}.spacy"),
    seed: int = typer.Option(0, "--seed", help="Seed of the split"),
    fmt: Optional[str] = typer.Option(None, "--format", help="Standoff input format: pubtator, bioc or brat "
                                      "(default: from the suffix; IOB/.spacy otherwise)"),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Standoff: spaCy pipeline or language code"),
    alignment: str = typer.Option("split", "--alignment", help="Standoff: split|expand|contract|strict"),
    overlaps: str = typer.Option("longest", "--overlaps", help="Standoff: longest|shortest|error"),
) -> None:
    """Split a corpus by document (never cutting one), each part with a similar share of
    each entity type; the same seed gives the same split on any machine. split.json lists
    the document ids of every part.
    """
    from spacy.vocab import Vocab

    from ..corpus.splits import document_groups, load_grouped, write_split

    shares = None if folds else parse_ratios(ratios)
    if folds and folds < 2:
        raise typer.BadParameter("must be at least 2", param_hint="--folds")
    with friendly_errors():
        if not input_path.exists():
            fail(f"{input_path}: no such file or folder")
        from ..corpus.standoff import detect_format

        standoff = fmt or (None if input_path.suffix == ".spacy" else detect_format(input_path))
        try:
            if standoff:
                from ..corpus.align import AlignmentSummary, load_tokenizer, standoff_docs
                from ..corpus.standoff import read_documents

                summary = AlignmentSummary()
                docs = list(standoff_docs(read_documents(input_path, standoff), load_tokenizer(tokenizer),
                                          alignment=alignment, overlaps=overlaps, summary=summary))
                total = summary.to_dict()["total"]
                msg.info(f"{input_path} ({standoff}): {total['documents']} documents, {total['read']} mentions read"
                         + "".join(f", {total[k]} {k.replace('_', ' ')}" for k in total
                                   if k not in ("documents", "read", "max_change_chars") and total[k]))
                grouping = document_groups(docs)
            else:
                docs, grouping = load_grouped([input_path], vocab=Vocab())
            if not docs:
                fail(f"{input_path}: no documents to split")
            result = write_split(docs, grouping, output_dir, ratios=shares, folds=folds, seed=seed,
                                 source=str(input_path))
        except ValueError as err:
            fail(" ".join(str(err).split()))
    if not grouping.documents_known:
        msg.warn(f"Split by {grouping.describe()}")
    types = sorted(result["entities"])
    rows = [(name, p["n_documents"], p["n_docs"], *(p["entities"].get(t, 0) for t in types))
            for name, p in result["parts"].items()]
    msg.table(rows, header=("part", "documents", "Docs", *types))
    msg.good(f"Wrote {output_dir / 'split.json'} (seed {seed})")
