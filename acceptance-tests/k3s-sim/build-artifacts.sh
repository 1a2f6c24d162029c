#!/bin/sh
# Build one k3s-sim `k3s` binary per version into an artifact directory for install.sh's offline "download":
#   acceptance-tests/k3s-sim/build-artifacts.sh DIR v1.31.5+k3s1 v1.32.1+k3s1 ...
# Produces DIR/<version>/k3s and DIR/channels/stable (the last version given). Each build sets K3S_SIM_VERSION,
# which the binary reads with option_env! at compile time; cargo rebuilds the crate when the variable changes.
set -e
[ $# -ge 2 ] || { echo "usage: $0 DIR VERSION..." >&2; exit 2; }
DIR=$1
shift
mkdir -p "$DIR/channels"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
for v in "$@"; do
    K3S_SIM_VERSION="$v" cargo build -q -p k3s-sim --bin k3s --manifest-path "$ROOT/Cargo.toml"
    mkdir -p "$DIR/$v"
    cp "$TARGET/debug/k3s" "$DIR/$v/k3s.tmp"
    mv -f "$DIR/$v/k3s.tmp" "$DIR/$v/k3s"
    (cd "$DIR/$v" && sha256sum k3s | sed 's/ k3s$/ k3s/' > sha256sum-amd64.txt)
    echo "$v" > "$DIR/channels/stable"
    echo "built $DIR/$v/k3s"
done
# Leave target/debug/k3s as the default build again.
env -u K3S_SIM_VERSION cargo build -q -p k3s-sim --bin k3s --manifest-path "$ROOT/Cargo.toml"
