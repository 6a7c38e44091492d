#!/usr/bin/env bash
# Builds a release tarball under dist/: the binary, boards/, calibration/, the tiny models, the
# sample recording, the systemd unit, the udev rules and install.sh.
#   bash scripts/package.sh                                  # for this machine
#   bash scripts/package.sh --target aarch64-unknown-linux-gnu [--features ort,realsense]
# The aarch64 build needs what scripts/cross-aarch64.sh installs (Debian cross gcc + rustup target).
set -euo pipefail
cd "$(dirname "$0")/.."
target=""
features=""
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=${2:?--target needs a triple}; shift 2 ;;
    --features) features=${2:?--features needs a list}; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "package.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done

args=(build --release --locked --bin spatialbot-edge)
[ -n "$features" ] && args+=(--features "$features")
if [ -n "$target" ]; then
  args+=(--target "$target")
  out_dir=${CARGO_TARGET_DIR:-target}/$target/release
  arch=${target%%-*}
  if [ "$target" = aarch64-unknown-linux-gnu ]; then
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}
    export CC_aarch64_unknown_linux_gnu=${CC_aarch64_unknown_linux_gnu:-aarch64-linux-gnu-gcc}
  fi
else
  out_dir=${CARGO_TARGET_DIR:-target}/release
  arch=$(uname -m)
fi
cargo "${args[@]}"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
name=spatialbot-edge-$version-$arch-linux${features:+-${features//,/-}}
stage=dist/$name
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/packaging" "$stage/models"
install -m 0755 "$out_dir/spatialbot-edge" "$stage/bin/spatialbot-edge"
echo "$arch" > "$stage/ARCH"
cp -r boards "$stage/boards"
if [ -d calibration ]; then cp -r calibration "$stage/calibration"; else echo "package.sh: no calibration/ folder yet; none packaged" >&2; fi
found_models=0
for m in models/tiny-*; do
  [ -d "$m" ] || continue
  cp -r "$m" "$stage/models/"
  rm -rf "$stage/models/$(basename "$m")/reference"   # test fixtures, not needed on a board
  found_models=1
done
# The sample recording `run` and `bench` fall back to when no camera is attached.
if [ -f tests/data/sample/recording.toml ]; then
  mkdir -p "$stage/recordings"
  cp -r tests/data/sample "$stage/recordings/sample"
fi
[ "$found_models" = 1 ] || echo "package.sh: no models/tiny-* folders yet; none packaged" >&2
cp models/MANIFEST.md "$stage/models/" 2>/dev/null || true
cp packaging/spatialbot-edge.service packaging/99-spatialbot-edge.rules "$stage/packaging/"
install -m 0755 packaging/install.sh "$stage/install.sh"
cp README.md "$stage/README.md"
cp -r docs "$stage/docs"

tar -C dist -czf "dist/$name.tar.gz" "$name"
rm -rf "$stage"
(cd dist && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")
echo "dist/$name.tar.gz ($(du -h "dist/$name.tar.gz" | cut -f1)), sha256 $(cut -d' ' -f1 "dist/$name.tar.gz.sha256")"
