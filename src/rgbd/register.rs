//! Registration of depth into the colour camera's frame.
