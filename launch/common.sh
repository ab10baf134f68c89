# Shared by launch/* scripts: paths, package list, root-run variables.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="/opt/swift/usr/bin:$PATH"
# Debian packages the project needs at build and run time.
SYNCYTIUM_APT_PACKAGES=(libopenmpi-dev openmpi-bin libopenblas-dev libhdf5-openmpi-dev liblzf-dev libigraph-dev libcairo2-dev pkg-config)
BIN_DIR="${SYNCYTIUM_BIN_DIR:-$ROOT/.build/release}"   # another build: SYNCYTIUM_BIN_DIR=.build-NAME/release
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
say() { printf '%s\n' "$*" >&2; }
