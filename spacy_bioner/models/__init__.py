"""Models: the transformer architecture, subword-window span getters, backbone resolution."""
