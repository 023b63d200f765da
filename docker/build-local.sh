#!/usr/bin/env bash
# Build docker/Dockerfile.cpu for real on a machine with no Docker engine and no image registry
# (CI's), then run the image and check it (docker/check-local-image.py). Used by .ci/run.
#
#   docker/build-local.sh            from anywhere; as root (or with passwordless sudo)
#
# 1. Tools: Debian's buildah and debootstrap, installed with apt-get when missing. Where they
#    cannot be installed, the script says so and exits 0 ("SKIPPED"): nothing was built.
# 2. The base: the Dockerfile's default BASE (debian:12.x-slim) cannot be pulled here, so a
#    Debian 12 (bookworm) minbase root is made with debootstrap, slimmed the way Debian's slim
#    images are, and imported as the local image $base. Cached in buildah's storage and made
#    again when older than INPUTTUNE_BASE_MAX_AGE_DAYS (7), so security updates come in.
# 3. The build: `buildah bud --isolation chroot --layers` of the same Dockerfile users build, with
#    --build-arg BASE=$base. pip inside the build reaches the package index only with this
#    machine's pip settings (CA bundle, local wheel folders): those are bind-mounted for the RUN
#    steps only (-v, read-only, as the HOME of the build's root user), never copied into a layer;
#    the check then looks for them in every layer and in the image's history.
#    Where a local wheel of the pinned torch (+cpu) is found, TORCH_INDEX_URL is the machine's
#    index (PyPI) and pip takes that wheel; elsewhere the Dockerfile's default (PyTorch's CPU index).
# 4. The size, then the checks (docker/check-local-image.py).
#
# Environment: INPUTTUNE_IMAGE (default localhost/inputtune:cpu), INPUTTUNE_BASE_MAX_AGE_DAYS (7),
# INPUTTUNE_DEBIAN_MIRROR (http://deb.debian.org/debian).
set -euo pipefail
cd "$(dirname "$0")/.."

image=${INPUTTUNE_IMAGE:-localhost/inputtune:cpu}
base=localhost/inputtune-base:debian12-minbase
mirror=${INPUTTUNE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
max_age_days=${INPUTTUNE_BASE_MAX_AGE_DAYS:-7}
dockerfile=docker/Dockerfile.cpu
say() { echo "build-local: $*"; }
skip() {
    say "SKIPPED, the CPU image was not built: $*"
    exit 0
}

if [ "$(id -u)" -ne 0 ]; then
    # buildah (chroot isolation, overlay storage) and debootstrap need root here.
    sudo -n true 2>/dev/null || skip "needs root or passwordless sudo (buildah, debootstrap)"
    exec sudo -n --preserve-env=INPUTTUNE_IMAGE,INPUTTUNE_BASE_MAX_AGE_DAYS,INPUTTUNE_DEBIAN_MIRROR "$0" "$@"
fi

# ------------------------------------------------------------------ 1. tools
if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
    if command -v apt-get >/dev/null; then
        say "installing Debian's buildah and debootstrap"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            buildah debootstrap; } >/dev/null 2>&1 || true
    fi
fi
command -v buildah >/dev/null || skip "buildah is not installed and apt-get could not install it"
command -v debootstrap >/dev/null || skip "debootstrap is not installed and apt-get could not install it"
say "$(buildah --version), debootstrap $(dpkg-query -W -f '${Version}' debootstrap 2>/dev/null || echo '?')"

work=$(mktemp -d /var/tmp/inputtune-build.XXXXXX)
trap 'rm -rf "$work"' EXIT

# ------------------------------------------------------------------ 2. the base
base_age_days() {
    local created
    created=$(buildah inspect --type image --format '{{.Docker.Created.Unix}}' "$base" 2>/dev/null) || return 1
    echo $((($(date +%s) - created) / 86400))
}

make_base() {
    local root=$work/root ctr mnt
    say "making $base: debootstrap --variant=minbase bookworm from $mirror"
    nice -n 10 debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
        { tail -20 "$work/debootstrap.log"; say "debootstrap failed"; exit 1; }
    # What Debian's slim images do to their minbase root (debuerreotype's --slimify and its apt
    # and dpkg settings): no documentation, manuals or translations, now or from later installs.
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{groff,info,linda,lintian/overrides,locale,man}/*
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
    # The slim image's sources: bookworm, its updates and its security updates.
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*
    rm -rf "${root:?}"/dev/* # the runtime gives each container its own /dev
    : >"$root/etc/resolv.conf"
    : >"$root/etc/hostname"

    ctr=$(buildah from --pull-never scratch)
    mnt=$(buildah mount "$ctr")
    tar -C "$root" -cf - . | tar -C "$mnt" -xpf -
    buildah umount "$ctr" >/dev/null
    # As `docker build` records the official images: PATH set, bash as the default command.
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash \
        --label "org.opencontainers.image.description=Debian $(cat "$root/etc/debian_version") minbase, made with debootstrap" \
        "$ctr"
    buildah commit --quiet --format docker --rm "$ctr" "$base" >/dev/null
    say "$base: Debian $(cat "$root/etc/debian_version")"
    rm -rf "$root"
}

age=$(base_age_days || echo none)
if [ "$age" = none ] || [ "$age" -ge "$max_age_days" ]; then
    t0=$SECONDS
    [ "$age" = none ] || buildah rmi "$base" >/dev/null 2>&1 || true
    make_base
    say "base made in $((SECONDS - t0))s"
else
    say "$base: cached ($age days old; made again after $max_age_days)"
fi

# ------------------------------------------------------------------ 3. the build
# This machine's pip settings, for the build only: CA bundle and local wheel folders (find-links).
pip_setting() { # NAME: the PIP_NAME variable, else pip's configured global.name (quotes removed)
    local var
    var=PIP_$(echo "$1" | tr 'a-z-' 'A-Z_')
    if [ -n "${!var:-}" ]; then
        echo "${!var}"
    else
        python3 -m pip config list 2>/dev/null | sed -n "s/^global\.$1='\(.*\)'$/\1/p" | tail -1
    fi
}
# They reach pip as the build's root user's own settings: a folder mounted read-only over /root
# (the HOME of RUN steps; the base's /root holds only shell profiles) with .config/pip/pip.conf,
# the CA bundle and the wheel folders, each mounted in turn. A bind mount onto a folder the base
# already has leaves nothing in the layer; a mount onto a new path (/etc/pip.conf, say) would leave
# an empty file or folder of that name in it. Written to by no step: read-only.
home=$work/home
mkdir -p "$home/.config/pip"
conf=$home/.config/pip/pip.conf
printf '[global]\ndisable-pip-version-check = true\n' >"$conf"
mounts=(-v "$home:/root:ro")
cert=$(pip_setting cert)
if [ -n "$cert" ] && [ -f "$cert" ]; then
    : >"$home/ca.crt"
    mounts+=(-v "$cert:/root/ca.crt:ro")
    echo "cert = /root/ca.crt" >>"$conf"
fi
index=$(pip_setting index-url)
case "$index" in http*) ;; *) index=https://pypi.org/simple ;; esac
torch_version=$(sed -n 's/^ARG TORCH_VERSION=//p' "$dockerfile")
links=() torch_wheel="" forbid=()
for link in $(pip_setting find-links); do
    dir=${link#file://}
    [ -d "$dir" ] || continue
    target=/root/find-links-${#links[@]}
    mkdir -p "$home/${target#/root/}"
    mounts+=(-v "$dir:$target:ro")
    links+=("$target")
    forbid+=(--forbid "$dir")
    for wheel in "$dir"/torch-"$torch_version"+cpu-cp311-*.whl; do
        [ -f "$wheel" ] && torch_wheel=$(basename "$wheel")
    done
done
[ ${#links[@]} -eq 0 ] || echo "find-links = ${links[*]}" >>"$conf"
build_args=(--build-arg "BASE=$base")
if [ -n "$torch_wheel" ]; then
    # The index then only has to serve the other packages: pip prefers the local +cpu wheel.
    build_args+=(--build-arg "TORCH_INDEX_URL=$index")
    say "torch: the local wheel $torch_wheel; other packages from $index"
fi

say "building $image from $dockerfile"
t0=$SECONDS
set +e +o pipefail # the build's own status, while its steps are shown as they come
nice -n 10 buildah bud --isolation chroot --format docker --layers --pull-never \
    "${build_args[@]}" "${mounts[@]}" -f "$dockerfile" -t "$image" . 2>&1 | tee "$work/build.log" |
    grep --line-buffered -E '^(STEP|COMMIT|--> Using cache)'
status=${PIPESTATUS[0]}
set -e -o pipefail
[ "$status" -eq 0 ] || { tail -40 "$work/build.log"; say "the build failed"; exit 1; }
say "built $image in $((SECONDS - t0))s"
# Earlier builds' images that nothing is built on any more (their source layers, a few tens of
# MB each); the layer cache of this build, its base and the dependency layers stay.
buildah rmi --prune >/dev/null 2>&1 || true

# ------------------------------------------------------------------ 4. size and checks
say "image size: $(buildah images --format '{{.Size}}' "$image" | head -1)"
python3 docker/check-local-image.py "$image" --forbid "$PWD" --forbid "$work" --forbid /root/find-links \
    --forbid /root/ca.crt "${forbid[@]}" ${cert:+--forbid-file "$cert"}
