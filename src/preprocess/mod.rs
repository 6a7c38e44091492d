//! PURE image preprocessing: expand2square, Pillow-exact bicubic resize, normalisation.
