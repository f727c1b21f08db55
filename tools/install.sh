#!/usr/bin/env bash
# Installs ntb-transport as a service: the binary, the udev rules, the per-port systemd unit and, when
# there is no policy yet, the example policy. Safe to run again: files whose content is already in place
# are left alone, and an existing /etc/ntb-transport/policy.conf is never touched.
#
#   swift build -c release && sudo bash tools/install.sh            # binary to /usr/local/bin
#   sudo bash tools/install.sh --prefix /usr                          # binary to /usr/bin
#   bash tools/install.sh --dry-run                                   # print what it would do
#   bash tools/install.sh --destdir /tmp/stage                        # stage under a root (packaging)
#
# What goes where (README.md, "Run as a service"):
#   PREFIX/bin/ntb-transport                           the binary (--binary, default .build/release/ntb-transport)
#   /etc/udev/rules.d/70-ntb-transport.rules           udev/70-ntb-transport.rules
#   /etc/systemd/system/ntb-transport@.service         udev/ntb-transport@.service, ExecStart = PREFIX/bin/ntb-transport
#   /etc/ntb-transport/policy.conf.example             udev/policy.conf.example (kept current)
#   /etc/ntb-transport/policy.conf                     the example, only if there is no policy.conf
#   /etc/ntb-transport/ports/                          per-port options of the unit (INSTANCE.conf)
# Then, unless --destdir or --dry-run is given: udevadm control --reload, systemctl daemon-reload.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/usr/local
destdir=""
binary="$root/.build/release/ntb-transport"
dry_run=0

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    echo "options: --prefix DIR (default /usr/local)  --destdir DIR  --binary PATH  --dry-run  --help"
}

die() { echo "install: $*" >&2; exit 1; }

while (($#)); do
    case "$1" in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory, e.g. --prefix /usr"; prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#*=}"; shift ;;
        --destdir) [ $# -ge 2 ] || die "--destdir needs a directory, e.g. --destdir /tmp/stage"; destdir="$2"; shift 2 ;;
        --destdir=*) destdir="${1#*=}"; shift ;;
        --binary) [ $# -ge 2 ] || die "--binary needs a path, e.g. --binary .build/release/ntb-transport"; binary="$2"; shift 2 ;;
        --binary=*) binary="${1#*=}"; shift ;;
        --dry-run|-n) dry_run=1; shift ;;
        --help|-h) usage; exit 0 ;;
        *) usage >&2; die "unknown argument '$1'" ;;
    esac
done

case "$prefix" in /*) ;; *) die "--prefix must be an absolute path (it is written into the unit's ExecStart), got '$prefix'" ;; esac
case "$destdir" in ""|/*) ;; *) destdir="$(pwd)/$destdir" ;; esac
prefix="${prefix%/}"
destdir="${destdir%/}"
[ -f "$binary" ] && [ -x "$binary" ] || \
    die "no executable at $binary; build it first (swift build -c release) or name it with --binary PATH"
for f in udev/70-ntb-transport.rules udev/ntb-transport@.service udev/policy.conf.example; do
    [ -f "$root/$f" ] || die "$root/$f is missing; run the script from a complete ntb-transport checkout"
done

bindir="$prefix/bin"
etc="$destdir/etc"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The unit with this prefix's binary path (the file in the repository says /usr/local/bin).
sed "s#/usr/local/bin/ntb-transport#$bindir/ntb-transport#g" "$root/udev/ntb-transport@.service" > "$tmp/ntb-transport@.service"

changed=0
run() {
    if ((dry_run)); then echo "would run: $*"; else "$@"; fi
}

# install_file MODE SOURCE TARGET: copies SOURCE to TARGET unless TARGET already has that content.
install_file() {
    local mode="$1" src="$2" dst="$3"
    if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
        echo "unchanged  $dst"
        return
    fi
    local dir
    dir="$(dirname "$dst")"
    if ((!dry_run)) && ! { mkdir -p "$dir" 2>/dev/null && [ -w "$dir" ]; }; then
        die "cannot write to $dir; run with sudo, or stage the files with --destdir DIR"
    fi
    if ((dry_run)); then
        echo "would run: install -m $mode $src $dst"
    else
        install -m "$mode" "$src" "$dst"
        echo "installed  $dst"
    fi
    changed=1
}

install_file 0755 "$binary" "$destdir$bindir/ntb-transport"
install_file 0644 "$root/udev/70-ntb-transport.rules" "$etc/udev/rules.d/70-ntb-transport.rules"
install_file 0644 "$tmp/ntb-transport@.service" "$etc/systemd/system/ntb-transport@.service"
install_file 0644 "$root/udev/policy.conf.example" "$etc/ntb-transport/policy.conf.example"
if [ -e "$etc/ntb-transport/policy.conf" ]; then
    echo "kept       $etc/ntb-transport/policy.conf (an existing policy is never overwritten)"
else
    install_file 0644 "$root/udev/policy.conf.example" "$etc/ntb-transport/policy.conf"
fi
if [ -d "$etc/ntb-transport/ports" ]; then
    echo "unchanged  $etc/ntb-transport/ports/"
else
    if ((dry_run)); then
        echo "would run: mkdir -p $etc/ntb-transport/ports"
    else
        mkdir -p "$etc/ntb-transport/ports"
        echo "created    $etc/ntb-transport/ports/"
    fi
fi

if [ -z "$destdir" ] && ((changed)); then
    if command -v udevadm >/dev/null && [ -d /run/udev ]; then run udevadm control --reload; fi
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then run systemctl daemon-reload; fi
fi

cat <<EOF
Next steps:
  sudo groupadd -f ntb && sudo usermod -aG ntb "\$USER"        # the udev rules give /dev/vfio/N to group ntb
  sudo udevadm trigger --subsystem-match=pci --action=add      # apply the rules to functions already present
  ntb-transport policy check /etc/ntb-transport/policy.conf    # then edit it for your ports
  sudo systemctl enable --now ntb-transport@0000:01:00.0.service
  # a mock or ivshmem port needs --role: per-port options in /etc/ntb-transport/ports/INSTANCE.conf
  echo 'NTB_TRANSPORT_ARGS="--role endpoint --dir /srv/ntb-in"' | sudo tee "/etc/ntb-transport/ports/\$(systemd-escape 'mock:/dev/shm/ntb0').conf"
  sudo systemctl enable --now "ntb-transport@\$(systemd-escape 'mock:/dev/shm/ntb0').service"
EOF
