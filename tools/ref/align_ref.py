#!/usr/bin/env python3
"""librealsense's own depth→colour `align` on synthetic frames: the reference our registration
is tested and timed against.

    align_ref.py CALIB.toml DEPTH.npy OUT.npy [CALIB DEPTH OUT ...]   aligned depth (uint16 mm)
    align_ref.py CALIB.toml DEPTH.npy --bench N      prints the median ms of N `align.process`
                                                     (this thread's CPU time, like ours)

CALIB.toml uses our calibration schema (rotation row-major). DEPTH.npy is uint16 millimetres at
the depth resolution. Frames go through a software_device with a depth and a colour sensor; the
depth units are set to 1 mm so raw values are millimetres whatever the TOML's depth_scale.
"""
import sys
import time
import tomllib

import numpy as np
import pyrealsense2 as rs

MODELS = {
    "none": rs.distortion.none,
    "brown_conrady": rs.distortion.brown_conrady,
    "inverse_brown_conrady": rs.distortion.inverse_brown_conrady,
    "modified_brown_conrady": rs.distortion.modified_brown_conrady,
}


def intrinsics(section):
    intr = rs.intrinsics()
    intr.width, intr.height = section["width"], section["height"]
    intr.fx, intr.fy = section["fx"], section["fy"]
    intr.ppx, intr.ppy = section["ppx"], section["ppy"]
    intr.model = MODELS[section["model"]]
    intr.coeffs = [float(c) for c in section["coeffs"]]
    return intr


class Aligner:
    def __init__(self, calib):
        self.calib = calib
        self.dev = rs.software_device()
        depth_sensor = self.dev.add_sensor("Depth")
        color_sensor = self.dev.add_sensor("Color")
        self.sensors = (depth_sensor, color_sensor)

        d, c = calib["depth"], calib["color"]
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid = rs.stream.depth, 0, 0
        vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = d["width"], d["height"], 30, 2, rs.format.z16
        vs.intrinsics = intrinsics(d)
        self.depth_profile = depth_sensor.add_video_stream(vs).as_video_stream_profile()
        depth_sensor.add_read_only_option(rs.option.depth_units, 0.001)

        cs = rs.video_stream()
        cs.type, cs.index, cs.uid = rs.stream.color, 0, 1
        cs.width, cs.height, cs.fps, cs.bpp, cs.fmt = c["width"], c["height"], 30, 3, rs.format.rgb8
        cs.intrinsics = intrinsics(c)
        self.color_profile = color_sensor.add_video_stream(cs).as_video_stream_profile()

        ext = rs.extrinsics()
        r = calib["depth_to_color"]["rotation"]
        # Ours is row-major; librealsense stores column-major.
        ext.rotation = [float(r[3 * col + row]) for row in range(3) for col in range(3)]
        ext.translation = [float(t) for t in calib["depth_to_color"]["translation"]]
        self.depth_profile.register_extrinsics_to(self.color_profile, ext)

        self.dev.create_matcher(rs.matchers.default)
        self.syncer = rs.syncer()
        depth_sensor.open(self.depth_profile)
        color_sensor.open(self.color_profile)
        depth_sensor.start(self.syncer)
        color_sensor.start(self.syncer)
        self.align = rs.align(rs.stream.color)
        self.color_pixels = np.zeros((c["height"], c["width"], 3), np.uint8)
        self.frame_number = 0

    def inject(self, depth_mm):
        self.frame_number += 1
        ts = self.frame_number * 33.0
        for sensor, profile, pixels, bpp in (
            (self.sensors[0], self.depth_profile, depth_mm, 2),
            (self.sensors[1], self.color_profile, self.color_pixels, 3),
        ):
            f = rs.software_video_frame()
            f.pixels = pixels
            f.stride = pixels.shape[1] * bpp
            f.bpp = bpp
            f.timestamp = ts
            f.domain = rs.timestamp_domain.hardware_clock
            f.frame_number = self.frame_number
            f.profile = profile
            sensor.on_video_frame(f)

    def frameset(self, depth_mm):
        """A depth+colour frameset holding `depth_mm`. The syncer holds back the very first
        frames it sees, so frames are injected again until a pair comes out."""
        depth_mm = np.ascontiguousarray(depth_mm, np.uint16)
        # librealsense may still reference earlier buffers: keep the last few alive.
        self._keep = (getattr(self, "_keep", []) + [depth_mm])[-8:]
        for _ in range(20):
            self.inject(depth_mm)
            try:
                fs = self.syncer.wait_for_frames(300)
            except RuntimeError:
                continue
            if fs.get_depth_frame() and fs.get_color_frame():
                return fs
        raise RuntimeError("syncer never produced a depth+colour frameset")

    def aligned(self, depth_mm):
        out = self.align.process(self.frameset(depth_mm))
        return np.asanyarray(out.get_depth_frame().get_data()).copy()


def main(argv):
    args = argv[1:]
    if not args or len(args) % 3:
        sys.exit(__doc__)
    for calib_path, depth_path, out_path in zip(args[0::3], args[1::3], args[2::3]):
        with open(calib_path, "rb") as f:
            calib = tomllib.load(f)
        np.save(out_path, Aligner(calib).aligned(np.load(depth_path)))


def bench(argv):
    with open(argv[1], "rb") as f:
        calib = tomllib.load(f)
    depth = np.load(argv[2])
    n = int(argv[4])
    aligner = Aligner(calib)
    times = []
    for _ in range(n):
        fs = aligner.frameset(depth)
        t0 = time.thread_time()
        out = aligner.align.process(fs)
        out.get_depth_frame().get_data()
        times.append(time.thread_time() - t0)
    times.sort()
    print(f"{1000 * times[len(times) // 2]:.4f}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[3] == "--bench":
        bench(sys.argv)
    else:
        main(sys.argv)
