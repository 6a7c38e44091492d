//! Robot policy: frame history, vision-embedding cache, action text parsing and decoding.
