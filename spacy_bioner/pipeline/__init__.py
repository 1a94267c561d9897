"""Pipeline components: the ``bioner_tagger`` token-classification head and its decoding."""
