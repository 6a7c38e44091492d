//! Links the CPython stub that librealsense from the pyrealsense2 wheel needs (see
//! scripts/setup-native-deps.sh). Only with the `realsense` feature and RS2_SHIM_DIR set; on a
//! board with a system librealsense, leave RS2_SHIM_DIR unset.

fn main() {
    println!("cargo:rerun-if-env-changed=RS2_SHIM_DIR");
    if std::env::var_os("CARGO_FEATURE_REALSENSE").is_none() {
        return;
    }
    if let Ok(dir) = std::env::var("RS2_SHIM_DIR") {
        println!("cargo:rustc-link-search=native={dir}");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-lpystub,--pop-state");
    }
}
