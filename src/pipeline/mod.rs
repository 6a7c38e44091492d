//! The `run` loop: threads, bounded channels, per-stage stamps, shutdown.
