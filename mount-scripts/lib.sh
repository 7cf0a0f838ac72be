# Shared by mount-scripts/test and mount-scripts/demo (source it, do not run it).

# The Debian 12 packages faultfs needs to build, mount and be tested.
FAULTFS_PACKAGES=(fuse3 libfuse3-dev pkg-config fio sqlite3 attr)
# What the tests use beyond that (ACL tools, the AIO test program's build, an
# ext4 reference, the browser that checks the report, pytest for the Python
# client, and what building and checking the .deb takes). mount-scripts/test
# installs them up front, through apt_install's package-list fallback; a test
# run on its own still installs what it misses.
FAULTFS_TEST_PACKAGES=(acl libaio-dev gcc libc6-dev e2fsprogs xfsprogs btrfs-progs chromium python3-pytest python3-pip dpkg-dev lintian man-db)

# apt-get install PKG...: waits up to 5 minutes for another apt/dpkg to let go
# of the lock (saying so), updates the package lists first if they are missing
# or the install fails on them, and names the packages on failure.
apt_install() {
    local lock=(-o DPkg::Lock::Timeout=300)
    echo "installing: $* (waiting up to 300 s for the dpkg lock if another apt/dpkg holds it)" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get "${lock[@]}" install -y -qq "$@" >/dev/null 2>&1; then
        apt-get "${lock[@]}" update -qq &&
            apt-get "${lock[@]}" install -y -qq "$@" >/dev/null ||
            { echo "error: apt-get install $* failed" >&2; return 1; }
    fi
}

# Installs whichever of FAULTFS_PACKAGES (and of the packages given as
# arguments) is missing; quick when none is.
install_dependencies() {
    local missing=() pkg
    for pkg in "${FAULTFS_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        apt_install "${missing[@]}" || return 1
    fi
    # The FUSE module may be built in (then modprobe fails harmlessly).
    modprobe fuse 2>/dev/null || true
    [[ -e /dev/fuse ]] || { echo "error: /dev/fuse is missing" >&2; return 1; }
}

# The repository root: the parent of mount-scripts/.
faultfs_repo_root() {
    cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd
}
