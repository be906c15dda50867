#!/usr/bin/env bash
# Build everything a Kubernetes node needs from Go modules (kube/*), cached by source hash.
#
#   scripts/build-kube.sh            build (or reuse) and point $CACHE/current at the result
#   scripts/build-kube.sh --key      print the cache key and exit
#
# Output: ${FLOTILLA_KUBE_CACHE:-/var/cache/flotilla/kube}/<key>/
#   bin/kube (+ symlinks kube-apiserver kube-controller-manager kube-scheduler kubelet
#   kube-proxy etcd), bin/containerd, bin/containerd-shim-runc-v2, bin/ctr, bin/flanneld,
#   bin/coredns, bin/pause, images/pause.tar, images/coredns.tar, VERSIONS, BUILD-TIMES.
# <key> hashes kube/ (go.mod, go.sum, *.go, *.sh), this script and scripts/kube-image.py, so
# a second run with unchanged sources only prints that it is cached. $CACHE/current is a
# symlink switched atomically to the finished key dir.
#
# Environment: FLOTILLA_KUBE_CACHE, FLOTILLA_GO_CACHE (module + build cache, default
# /var/cache/flotilla/go: kept outside the repo so CI on one machine stays warm),
# FLOTILLA_KUBE_LANES (parallel component builds, default from memory: 2 with >= 8 GiB),
# GOPROXY (default proxy.golang.org). go.sum is committed and always checked (-mod=readonly);
# when sum.golang.org is unreachable the checksum database is switched off (GOSUMDB=off), which
# only skips the first-use lookup for modules missing from go.sum: there are none.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

CACHE=${FLOTILLA_KUBE_CACHE:-/var/cache/flotilla/kube}
GOROOT_CACHE=${FLOTILLA_GO_CACHE:-/var/cache/flotilla/go}
PAUSE_TAG=3.10

die() { echo "build-kube: $*" >&2; exit 1; }

sources() {
  { find kube -type f \( -name go.mod -o -name go.sum -o -name '*.go' -o -name '*.sh' \) -print
    echo scripts/build-kube.sh
    echo scripts/kube-image.py; } | LC_ALL=C sort
}
cache_key() {
  sources | while read -r f; do printf '%s\n' "$f"; sha256sum <"$f"; done | sha256sum | cut -c1-16
}
key=$(cache_key)
[ "${1:-}" = --key ] && { echo "$key"; exit 0; }

dest=$CACHE/$key
point_current() {
  ln -sfn "$key" "$CACHE/.current.tmp"
  mv -Tf "$CACHE/.current.tmp" "$CACHE/current"
}
if [ -f "$dest/.complete" ]; then
  mkdir -p "$CACHE" && point_current
  echo "==> kube binaries cached: $dest ($(tr '\n' ' ' <"$dest/VERSIONS"))"
  exit 0
fi

# --- toolchain ------------------------------------------------------------------------------
command -v go >/dev/null || die "Go is not installed (need go >= the go lines in kube/*/go.mod); install Go 1.26+ from https://go.dev/dl and put it on PATH"
need=$(sed -n 's/^go \([0-9.]*\)$/\1/p' kube/*/go.mod | sort -V | tail -1)
have=$(GOTOOLCHAIN=local go env GOVERSION | sed 's/^go//')
[ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" = "$need" ] ||
  die "go $have is too old: kube/*/go.mod need go >= $need"
command -v python3 >/dev/null || die "python3 is needed to write the image archives"

mkdir -p "$CACHE" "$GOROOT_CACHE/mod" "$GOROOT_CACHE/build"
exec 9>"$CACHE/.lock"
flock 9 # one build at a time; the second waiter finds the result cached
if [ -f "$dest/.complete" ]; then
  point_current
  echo "==> kube binaries cached: $dest (built by a concurrent run)"
  exit 0
fi

export GOTOOLCHAIN=local GOMODCACHE=$GOROOT_CACHE/mod GOCACHE=$GOROOT_CACHE/build
export GOFLAGS="-mod=readonly -buildvcs=false -trimpath"
export GOPROXY=${GOPROXY:-https://proxy.golang.org,direct}
if [ -z "${GOSUMDB:-}" ]; then
  if curl -fsS -m 5 -o /dev/null https://sum.golang.org/lookup/golang.org/x/text@v0.3.0 2>/dev/null; then
    export GOSUMDB=sum.golang.org
  else
    echo "==> sum.golang.org unreachable: GOSUMDB=off (hashes still checked against the committed go.sum files)"
    export GOSUMDB=off
  fi
fi

jobs=$(nproc)
mem_gib=$(awk '/^MemTotal:/ {print int($2 / 1048576)}' /proc/meminfo)
lanes=${FLOTILLA_KUBE_LANES:-$([ "$mem_gib" -ge 8 ] && echo 2 || echo 1)}

work=$CACHE/.build-$key
rm -rf "$work"
mkdir -p "$work/bin" "$work/images" "$work/logs"
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
since() { local s=$(($(date +%s) - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

modversion() { (cd "kube/$1" && go list -m -f '{{.Version}}' "$2"); }
k8s_version=$(modversion k8s k8s.io/kubernetes)
etcd_version=$(modversion k8s go.etcd.io/etcd/server/v3)
containerd_version=$(modversion containerd github.com/containerd/containerd/v2)
flannel_version=$(modversion flannel github.com/flannel-io/flannel)
coredns_version=$(modversion coredns github.com/coredns/coredns)
echo "==> building kube $key: kubernetes $k8s_version, etcd $etcd_version, containerd $containerd_version," \
  "flannel $flannel_version, coredns $coredns_version (go $have, -p $jobs, $lanes lanes, GOSUMDB=$GOSUMDB)"

# gobuild NAME MODULE-DIR CGO [go build args...]: one timed `go build`, its log in logs/NAME.log
timer=()
[ -x /usr/bin/time ] && timer=(/usr/bin/time -f '%e s, max RSS %M KiB' -o)
gobuild() {
  local name=$1 dir=$2 cgo=$3 t0 rc=0 stats=""
  shift 3
  t0=$(date +%s)
  echo "    [$name] started"
  (cd "kube/$dir" && export CGO_ENABLED=$cgo &&
    "${timer[@]}" ${timer:+"$work/logs/$name.time"} go build -p "$jobs" "$@") >"$work/logs/$name.log" 2>&1 || rc=$?
  touch "$work/logs/$name.time" "$work/logs/$name.done"
  if [ "$rc" -ne 0 ]; then
    echo "    [$name] FAILED after $(since "$t0"); last lines of $work/logs/$name.log:" >&2
    tail -n 30 "$work/logs/$name.log" >&2
    return "$rc"
  fi
  stats=$(tail -1 "$work/logs/$name.time")
  echo "$name $(since "$t0") $stats" >>"$work/BUILD-TIMES"
  echo "    [$name] done in $(since "$t0")${stats:+ ($stats)}"
}

build_k8s() {
  local ld="-s -w" p date
  date=$(cd kube/k8s && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
  local minor=${k8s_version#v1.}
  minor=${minor%%.*}
  for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ld+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  gobuild kube k8s 0 -tags providerless,notest,grpcnotrace,selinux -ldflags "$ld" -o "$work/bin/kube" . || return
  local c
  for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy etcd; do
    ln -s kube "$work/bin/$c"
  done
}

build_containerd() {
  local pkg=github.com/containerd/containerd/v2
  local ld="-s -w -X $pkg/version.Version=$containerd_version -X $pkg/version.Package=$pkg -X $pkg/version.Revision=flotilla"
  local tags=urfave_cli_no_docs,osusergo,netgo,static_build,no_btrfs,no_devmapper,no_zfs
  gobuild containerd containerd 0 -tags "$tags" -ldflags "$ld" -o "$work/bin/" "$pkg/cmd/containerd" "$pkg/cmd/ctr" || return
  gobuild containerd-shim-runc-v2 containerd 0 -tags "$tags,no_grpc" -ldflags "$ld" \
    -o "$work/bin/containerd-shim-runc-v2" "$pkg/cmd/containerd-shim-runc-v2"
}

build_flannel() {
  # cgo on purpose: flannel's udp backend (label flannel_backend=udp) is C; linked statically.
  command -v gcc >/dev/null || { echo "build-kube: gcc (and libc6-dev) are needed for flanneld's udp backend" >&2; return 1; }
  gobuild flanneld flannel 1 -tags netgo,osusergo \
    -ldflags "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$flannel_version -extldflags -static" \
    -o "$work/bin/flanneld" .
}

build_small() {
  gobuild coredns coredns 0 -ldflags "-s -w" -o "$work/bin/coredns" . || return
  gobuild pause pause 0 -ldflags "-s -w" -o "$work/bin/pause" . || return
  python3 scripts/kube-image.py "$work/images/pause.tar" "flotilla.local/pause:$PAUSE_TAG" "$work/bin/pause" >/dev/null || return
  python3 scripts/kube-image.py "$work/images/coredns.tar" "flotilla.local/coredns:$coredns_version" \
    "$work/bin/coredns" >/dev/null || return
  echo "    [images] pause.tar, coredns.tar written"
}

lane_small() { build_containerd && build_flannel && build_small; }

# Progress: one line a minute naming what is still compiling.
(
  while sleep 60; do
    running=$(cd "$work/logs" 2>/dev/null && for f in *.log; do
      [ -e "${f%.log}.done" ] || printf '%s ' "${f%.log}"; done)
    echo "    ... $(since "$start") elapsed, building: ${running:-images}"
  done
) &
ticker=$!
trap 'kill $ticker 2>/dev/null; rm -rf "$work"' EXIT

if [ "$lanes" -ge 2 ]; then
  build_k8s &
  k8s_pid=$!
  rc=0
  lane_small || rc=$?
  wait "$k8s_pid" || rc=$?
  [ "$rc" -eq 0 ] || die "build failed (see above)"
else
  build_k8s && lane_small || die "build failed (see above)"
fi

cat >"$work/VERSIONS" <<EOF
kubernetes=$k8s_version
etcd=$etcd_version
containerd=$containerd_version
flannel=$flannel_version
coredns=$coredns_version
pause=$PAUSE_TAG
go=go$have
key=$key
EOF
echo "total $(since "$start")" >>"$work/BUILD-TIMES"
rm -rf "$work/logs"
touch "$work/.complete"
rm -rf "$dest"
mv -T "$work" "$dest"
point_current
echo "==> kube binaries built in $(since "$start"): $dest"
du -sh "$dest"/bin/* "$dest"/images/* | sed 's/^/    /'
