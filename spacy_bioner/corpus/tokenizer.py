"""The biomedical tokenizer: raw text split as the biomedical NER corpora are split.

The token-per-line corpora (the MTL and BioBERT copies of NCBI-disease, BC5CDR,
BC2GM, JNLPBA, …) cut every character that is neither a letter nor a digit off as
a token of its own: ``Selegiline-induced`` → ``Selegiline - induced``,
``TP53/BRCA1`` → ``TP53 / BRCA1``, ``IL-2`` → ``IL - 2``, ``0.05`` → ``0 . 05``,
``E. coli`` → ``E . coli``; letters and digits stay together (``50mg``, ``3beta``).
spaCy's English tokenizer keeps ``IL-2``, ``0.05``, ``E.`` or ``e.g.`` whole and cuts
``50mg`` in two, so a pipeline trained on the corpora would meet tokens at
prediction time it never saw in training. The biomedical tokenizer is spaCy's
tokenizer with the language's special cases that keep a word whole, no URL rule,
and one affix rule in place of the language's
prefixes, suffixes and infixes: any single punctuation or symbol character is a
token (as scispaCy's tokenizer adds infixes for ``-``, ``+``, ``:`` … between
letters and digits, but for every such character, as the corpora split them).

Registered as ``spacy_bioner.BioTokenizer.v1`` in spaCy's ``tokenizers`` registry:
``[nlp.tokenizer] @tokenizers = "spacy_bioner.BioTokenizer.v1"``. A saved pipeline
stores the rules with the tokenizer (``tokenizer/`` in its folder), so it reloads
with the same splits.
"""
import re
from typing import Callable, Dict, List

import spacy
from spacy.language import Language
from spacy.tokenizer import Tokenizer
from spacy.util import compile_infix_regex, compile_prefix_regex, compile_suffix_regex

#: Invisible format characters (soft hyphen, zero-width space and joiners, BOM): never a token of their own.
FORMAT_CHARS = "\u00ad\u200b-\u200f\u2060-\u2064\ufeff"
#: One punctuation or symbol character (neither a letter, a digit nor whitespace; ``_`` included), with any
#: format characters after it: ``Selegi\xadline`` stays a word, ``.\u200b`` one token.
PUNCT_CHAR = rf"(?:(?:[^\w\s{FORMAT_CHARS}]|_)[{FORMAT_CHARS}]*)"


def bio_affixes() -> List[str]:
    """The prefix, suffix and infix rules alike: one punctuation character is a token. (spaCy's English
    rules add multi-character ones, ``...``, ``'s``, ``--``, and cut units off numbers, ``5mg``; the
    corpora do neither.)"""
    return [PUNCT_CHAR]


def bio_exceptions(exceptions: Dict[str, list]) -> Dict[str, list]:
    """The special cases kept: those that leave a word of letters and digits whole (they only set its
    norm). Those with punctuation (``e.g.``, ``don't``, ``:)``) or that cut a word (``cannot``, ``Id``)
    go, since the corpora keep words whole and split punctuation like any other.

    exceptions (Dict[str, list]): a language's tokenizer exceptions.
    RETURNS (Dict[str, list]): the kept ones.
    """
    return {
        text: pieces
        for text, pieces in exceptions.items()
        if len(pieces) == 1 and not re.search(PUNCT_CHAR, text)
    }


def create_bio_tokenizer(nlp: Language) -> Tokenizer:
    """The biomedical tokenizer for a pipeline's vocab: its language's exceptions (filtered) and one token
    per punctuation character. No URL rule: spaCy's keeps ``E.coli``, ``B.cereus`` or ``6.3.1.2`` whole
    (they look like host names), and the corpora split URLs like any other text.

    nlp (Language): the pipeline.
    RETURNS (Tokenizer): the tokenizer.
    """
    return Tokenizer(
        nlp.vocab,
        rules=bio_exceptions(nlp.Defaults.tokenizer_exceptions),
        prefix_search=compile_prefix_regex(bio_affixes()).search,
        suffix_search=compile_suffix_regex(bio_affixes()).search,
        infix_finditer=compile_infix_regex(bio_affixes()).finditer,
        token_match=None,
        url_match=None,
    )


@spacy.registry.tokenizers("spacy_bioner.BioTokenizer.v1")
def configure_bio_tokenizer() -> Callable[[Language], Tokenizer]:
    """``spacy_bioner.BioTokenizer.v1``: the biomedical tokenizer (see the module)."""
    return create_bio_tokenizer
