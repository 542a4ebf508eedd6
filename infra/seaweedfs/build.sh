#!/usr/bin/env bash
# Build SeaweedFS (an S3-compatible object store, Apache-2.0) from its Go module, once, for the
# object-store tests (pytest -m objectstore). Prints the path of the binary.
#
# A plain `go install github.com/seaweedfs/seaweedfs/weed@VERSION` is refused because the module's
# go.mod has a replace directive; a small wrapper module repeats that replace instead.
# About 6 CPU-minutes the first time; the binary is cached under ~/.cache/mobility/seaweedfs/VERSION.
set -euo pipefail
VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
CACHE="${MOBILITY_CACHE:-$HOME/.cache/mobility}/seaweedfs/$VERSION"
BIN="$CACHE/weed"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
command -v go >/dev/null || { echo "error: the Go toolchain is needed to build SeaweedFS (https://go.dev/dl/)" >&2; exit 3; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
go mod init weedbuild >/dev/null 2>&1
go mod edit -replace github.com/tyler-smith/go-bip39=github.com/cosmos/go-bip39@v1.0.0
go get "github.com/seaweedfs/seaweedfs/weed@$VERSION" >&2
mkdir -p "$CACHE"
GOFLAGS=-mod=mod go build -o "$BIN.tmp" github.com/seaweedfs/seaweedfs/weed >&2
mv "$BIN.tmp" "$BIN"
echo "$BIN"
