//! Stage timing, latency histograms and reports.
