"""Load a trained pipeline the way a downstream app does and print its entities.

    python scripts/try_pipeline.py training/demo/model-best ["Some text."]
"""
import sys

import spacy

DEFAULT_TEXT = "BRCA1 mutations cause hereditary breast cancer."


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    nlp = spacy.load(sys.argv[1])
    text = sys.argv[2] if len(sys.argv) > 2 else DEFAULT_TEXT
    doc = nlp(text)
    print(f"nlp({text!r}).ents:")
    for ent in doc.ents:
        print(f"  {ent.text!r:40} {ent.label_} [{ent.start_char}:{ent.end_char}]")
    if not doc.ents:
        print("  (none)")


if __name__ == "__main__":
    main()
