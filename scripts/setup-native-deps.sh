#!/usr/bin/env bash
# Makes a real librealsense available to `cargo build --features realsense` on x86_64 without
# building the SDK: the PyPI pyrealsense2 wheel carries librealsense linked into its Python
# module, which exports the whole rs2_* C API. We link against that module under the name
# librealsense2.so, and give its unused CPython references a stub library so it loads.
#
# Writes everything under $DEPS (default: .deps in the repository) and $DEPS/env.sh, which sets
# PKG_CONFIG_PATH (for realsense-sys) and RS2_SHIM_DIR (for our build.rs). Idempotent.
# On a Jetson, don't run this: install librealsense from the board's packages (>= 2.56) and
# leave RS2_SHIM_DIR unset.
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS=${DEPS:-$PWD/.deps}
RS_VERSION=${RS_VERSION:-2.56.5.9235}
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
RSLIB="$DEPS/rslib"

if [ "$(uname -m)" != x86_64 ]; then
  echo "setup-native-deps: the pyrealsense2 wheel exists only for x86_64; install librealsense (>= 2.56) from your board's packages" >&2
  exit 1
fi

need_apt=()
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v gcc >/dev/null || need_apt+=(gcc libc6-dev)
command -v readelf >/dev/null || need_apt+=(binutils)
ldconfig -p | grep -q 'libusb-1.0.so.0' || need_apt+=(libusb-1.0-0)
ldconfig -p | grep -q 'libudev.so.1' || need_apt+=(libudev1)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup-native-deps: please install: ${need_apt[*]} (apt-get install ...)" >&2
    exit 1
  fi
fi

mkdir -p "$DEPS/wheels" "$DEPS/rs" "$RSLIB/pkgconfig"
if ! ls "$DEPS"/wheels/pyrealsense2-"$RS_VERSION"-*.whl >/dev/null 2>&1; then
  "$PY" -m pip download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
    --python-version 3.11 -d "$DEPS/wheels" "pyrealsense2==$RS_VERSION"
fi
if ! ls "$DEPS"/rs/pyrealsense2/pyrealsense2.cpython-*-x86_64-linux-gnu.so >/dev/null 2>&1; then
  "$PY" -m zipfile -e "$DEPS"/wheels/pyrealsense2-"$RS_VERSION"-*.whl "$DEPS/rs"
fi
MODULE=$(ls "$DEPS"/rs/pyrealsense2/pyrealsense2.cpython-*-x86_64-linux-gnu.so | head -n1)
SONAME=$(readelf -d "$MODULE" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
ln -sf "$MODULE" "$RSLIB/librealsense2.so"
[ -n "$SONAME" ] && ln -sf "$MODULE" "$RSLIB/$SONAME"

# Every CPython symbol the module references: data ones get storage, functions abort if called
# (the rs2_* C API never calls them).
nm -D --undefined-only "$MODULE" | awk '{print $2}' | sed 's/@.*//' | grep -E '^_?Py' | sort -u > "$RSLIB/python-symbols.txt"
readelf -rW "$MODULE" | awk '$3 ~ /GLOB_DAT|R_X86_64_64|COPY/ {print $5}' | sed 's/@.*//' | grep -E '^_?Py' | sort -u > "$RSLIB/python-data.txt"
{
  echo '#include <stdlib.h>'
  while read -r sym; do
    if grep -qx "$sym" "$RSLIB/python-data.txt"; then echo "char $sym[256];"; else echo "void $sym(void) { abort(); }"; fi
  done < "$RSLIB/python-symbols.txt"
} > "$RSLIB/pystub.c"
gcc -shared -fPIC -O2 -o "$RSLIB/libpystub.so" "$RSLIB/pystub.c"

cat > "$RSLIB/pkgconfig/realsense2.pc" <<PC
libdir=$RSLIB
Name: realsense2
Description: librealsense2 C API from the pyrealsense2 wheel
Version: ${RS_VERSION%.*}
Libs: -L\${libdir} -lrealsense2
Cflags:
PC
cat > "$DEPS/env.sh" <<ENV
export PKG_CONFIG_PATH="$RSLIB/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}"
export RS2_SHIM_DIR="$RSLIB"
ENV
echo "setup-native-deps: librealsense ${RS_VERSION%.*} ready; run: source $DEPS/env.sh"
