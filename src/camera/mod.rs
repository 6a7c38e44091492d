//! Frame sources: RealSense (feature `realsense`), V4L2 (feature `v4l2`), replay, synthetic.
