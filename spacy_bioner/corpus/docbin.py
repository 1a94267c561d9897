"""spaCy DocBins (``.spacy``) on disk: what ``convert`` writes and every command reads."""
from pathlib import Path
from typing import Iterable, List, Optional, Union

from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from ..errors import CorpusFormatError

#: The token attributes a corpus needs: words, spaces, sentences, entities.
DOCBIN_ATTRS = ["ORTH", "SPACY", "SENT_START", "ENT_IOB", "ENT_TYPE"]


def load_docbin(path: Union[str, Path], vocab: Optional[Vocab] = None) -> List[Doc]:
    """Read a ``.spacy`` DocBin with user data.

    path (Union[str, Path]): the file.
    vocab (Optional[Vocab]): vocab for the Docs (a new one if None).
    RETURNS (List[Doc]): the Docs. A missing, empty or corrupt file is a
        :class:`~spacy_bioner.errors.CorpusFormatError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusFormatError("no such DocBin; run `spacy-bioner convert` first", path=path)
    data = path.read_bytes()
    if not data:
        raise CorpusFormatError("empty file, not a spaCy DocBin; re-create it with `spacy-bioner convert`",
                                path=path)
    try:
        return list(DocBin(store_user_data=True).from_bytes(data).get_docs(vocab or Vocab()))
    except Exception as err:  # zlib, msgpack and spaCy errors all mean the same thing here
        raise CorpusFormatError(
            f"not a readable spaCy DocBin ({type(err).__name__}: {_first_words(str(err))}); the file is corrupt "
            "or truncated: re-create it with `spacy-bioner convert`",
            path=path,
        ) from None


def _first_words(text: str, limit: int = 80) -> str:
    """``text`` on one line, cut at a word boundary with an ellipsis when longer than ``limit``."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + "…"


def save_docbin(docs: Iterable[Doc], path: Union[str, Path]) -> None:
    """Write Docs to a ``.spacy`` DocBin, keeping sentence starts and user data.

    User data (``-DOCSTART-`` and untyped-tag markers) is stored only when some
    Doc has any: srsly's msgpack costs ~0.15 ms per Doc, which doubles the time
    to save and load a large corpus that does not need it.

    docs (Iterable[Doc]): the Docs.
    path (Union[str, Path]): the output file (parent folders are created).
    """
    docs = list(docs)
    db = DocBin(attrs=DOCBIN_ATTRS, store_user_data=any(doc.user_data for doc in docs))
    for doc in docs:
        db.add(doc)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db.to_disk(path)
