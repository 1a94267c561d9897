"""Models: the transformer architecture, subword-window span getters, backbone resolution, token-classification
heads and the causal-decoder token vectors (``DecoderTagger.v1``)."""
