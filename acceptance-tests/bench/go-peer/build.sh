#!/usr/bin/env bash
# Builds the benchmark's Go peer provider offline: build.sh OUT_DIR -> OUT_DIR/terraform-provider-peer.
#
# Nothing here is fetched: the tfplugin6 stubs are generated from the repository's own proto/ with Debian's protoc,
# protoc-gen-go and protoc-gen-go-grpc into OUT_DIR (never into the source tree), and the Go build runs in GOPATH
# mode against Debian's packaged sources in /usr/share/gocode (GO111MODULE=off: there is no module proxy to
# resolve a go.mod against). The binary is linked as HashiCorp's provider releases are: static (CGO_ENABLED=0)
# and stripped (-s -w).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:?usage: build.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)

for tool in go protoc protoc-gen-go protoc-gen-go-grpc; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build.sh: $tool not found" >&2; exit 1; }
done

gopath="$out/gopath"
pkg="$gopath/src/homelabpeer"
rm -rf "$pkg"
mkdir -p "$pkg/tfplugin6" "$pkg/cmd"
# tfplugin6.proto has no go_package option (it is our text of the protocol); M maps it to the stub package.
map=Mtfplugin6.proto=homelabpeer/tfplugin6
protoc -I "$root/proto" -I /usr/include \
  --go_out="$pkg/tfplugin6" --go_opt=paths=source_relative --go_opt="$map" \
  --go-grpc_out="$pkg/tfplugin6" --go-grpc_opt=paths=source_relative --go-grpc_opt="$map" \
  tfplugin6.proto
cp "$here"/*.go "$pkg/cmd/"

cd "$pkg/cmd"
GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="$out/cache" GOFLAGS= CGO_ENABLED=0 \
  go build -trimpath -ldflags='-s -w' -o "$out/terraform-provider-peer.tmp" .
mv -f "$out/terraform-provider-peer.tmp" "$out/terraform-provider-peer"
