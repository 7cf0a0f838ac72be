# Shared by mount-scripts/test and mount-scripts/demo (source it, do not run it).

# The Debian 12 packages faultfs needs to build, mount and be tested.
FAULTFS_PACKAGES=(fuse3 libfuse3-dev pkg-config fio sqlite3 attr)

# Installs whichever of FAULTFS_PACKAGES is missing; quick when none is.
install_dependencies() {
    local missing=() pkg
    for pkg in "${FAULTFS_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        echo "installing: ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # The FUSE module may be built in (then modprobe fails harmlessly).
    modprobe fuse 2>/dev/null || true
    [[ -e /dev/fuse ]] || { echo "error: /dev/fuse is missing" >&2; return 1; }
}

# The repository root: the parent of mount-scripts/.
faultfs_repo_root() {
    cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd
}
