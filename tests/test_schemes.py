import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_bioner.corpus.schemes import TagError, decode, detect_scheme, encode, parse_tag


def parsed(tags, untyped="ENTITY"):
    return [parse_tag(t, untyped_label=untyped) for t in tags]


@pytest.mark.parametrize(
    "tag,expected",
    [
        ("O", ("O", None)),
        ("0", ("O", None)),
        ("B-Disease", ("B", "Disease")),
        ("I-cell_type", ("I", "cell_type")),
        ("E-X", ("E", "X")),
        ("S-X", ("S", "X")),
        ("L-X", ("E", "X")),
        ("U-X", ("S", "X")),
        ("B", ("B", "ENTITY")),
        ("I", ("I", "ENTITY")),
        ("B-Regulon-operon", ("B", "Regulon-operon")),
    ],
)
def test_parse_tag(tag, expected):
    assert parse_tag(tag, untyped_label="ENTITY") == expected


@pytest.mark.parametrize("tag", ["X", "B-", "BX", "b-Gene", "B_Gene", "B- Gene", "OO", "I-Gene "])
def test_parse_tag_rejects(tag):
    with pytest.raises(TagError, match="invalid tag"):
        parse_tag(tag, untyped_label="ENTITY")


@pytest.mark.parametrize(
    "tags,scheme",
    [
        (["O", "B-X", "I-X", "O"], "iob2"),
        (["I-X", "I-X", "B-X", "O"], "iob1"),
        (["O", "S-X", "B-X", "E-X"], "bioes"),
        (["B-X", "I-X", "O", "O", "E-Y"], "bioes"),
        (["U-X", "B-X", "L-X"], "bioes"),
        (["O", "O"], "iob2"),
        (["I-X", "O", "B-Y"], "iob2"),  # a B- after O only exists in IOB2
    ],
)
def test_detect_scheme(tags, scheme):
    assert detect_scheme([parsed(tags)]) == scheme


def test_iob1_touching_entities_stay_separate():
    spans = decode(parsed(["I-X", "I-X", "B-X", "I-X", "I-Y", "O"]), scheme="iob1")
    assert spans == [(0, 2, "X"), (2, 4, "X"), (4, 5, "Y")]


def test_iob2_repairs_orphan_i_and_type_switch():
    repairs = []
    spans = decode(
        parsed(["O", "I-X", "I-X", "I-Y", "O", "I-X"]),
        scheme="iob2",
        on_repair=lambda i, kind, detail: repairs.append((i, kind, detail)),
    )
    assert spans == [(1, 3, "X"), (3, 4, "Y"), (5, 6, "X")]
    assert [(i, k) for i, k, _ in repairs] == [
        (1, "I- opening an entity"),
        (3, "I- opening an entity"),
        (5, "I- opening an entity"),
    ]
    assert repairs[1][2] == "I-Y after I-X"


def test_iob1_has_no_repairs_for_i_openings():
    repairs = []
    decode(parsed(["I-X", "O", "I-Y"]), scheme="iob1", on_repair=lambda *a: repairs.append(a))
    assert repairs == []


def test_bioes_decoding_and_unterminated_repair():
    repairs = []
    tags = parsed(["S-X", "B-X", "I-X", "E-X", "B-Y", "O", "I-X", "E-X"])
    spans = decode(tags, scheme="bioes", on_repair=lambda i, k, d: repairs.append((i, k)))
    assert spans == [(0, 1, "X"), (1, 4, "X"), (4, 5, "Y"), (6, 8, "X")]
    assert repairs == [(4, "entity not closed by E-/S-"), (6, "I- opening an entity")]


def test_e_tags_rejected_in_iob_scheme():
    with pytest.raises(TagError, match="not part of scheme iob2") as err:
        decode(parsed(["B-X", "E-X"]), scheme="iob2")
    assert err.value.index == 1


@pytest.mark.parametrize(
    "scheme,expected",
    [
        ("iob2", ["B-X", "I-X", "B-X", "O", "B-Y"]),
        ("iob1", ["I-X", "I-X", "B-X", "O", "I-Y"]),
        ("bioes", ["B-X", "E-X", "S-X", "O", "S-Y"]),
        ("bilou", ["B-X", "L-X", "U-X", "O", "U-Y"]),
    ],
)
def test_encode(scheme, expected):
    assert encode([(0, 2, "X"), (2, 3, "X"), (4, 5, "Y")], 5, scheme=scheme) == expected


def test_encode_bare_label():
    assert encode([(0, 2, "ENTITY")], 3, scheme="iob2", bare_label="ENTITY") == ["B", "I", "O"]


@st.composite
def sentences_with_spans(draw):
    n = draw(st.integers(min_value=1, max_value=25))
    spans, i = [], 0
    while i < n:
        if draw(st.booleans()):
            length = draw(st.integers(min_value=1, max_value=min(4, n - i)))
            spans.append((i, i + length, draw(st.sampled_from(["X", "Y", "Gene_or_gene_product"]))))
            i += length
        else:
            i += draw(st.integers(min_value=1, max_value=3))
    return n, spans


@settings(max_examples=300, deadline=None)
@given(sentences_with_spans(), st.sampled_from(["iob1", "iob2", "bioes", "bilou"]))
def test_encode_decode_round_trip(sentence, scheme):
    n, spans = sentence
    tags = encode(spans, n, scheme=scheme)
    detected = detect_scheme([parsed(tags)])
    repairs = []
    assert decode(parsed(tags), scheme=detected, on_repair=lambda *a: repairs.append(a)) == spans
    assert repairs == []
