#!/bin/sh
# The lab's k3s install script (k3s-sim).
#
# Written for the host lab from the documented contract of k3s's own get.k3s.io script (see
# shared/reference/k3s.md §1): the same environment variables, files, modes, log lines, exit codes and restart
# decision, so that the provider's command sequences behave here as they would on a real node. It is not a copy of
# that script. Differences, on purpose:
#   - No network: the "download" copies a build of our `k3s` stand-in from $INSTALL_K3S_SIM_ARTIFACTS, laid out as
#       $INSTALL_K3S_SIM_ARTIFACTS/<version>/k3s           (one build per version, e.g. v1.31.5+k3s1/k3s)
#       $INSTALL_K3S_SIM_ARTIFACTS/channels/<channel>      (a file holding the version a channel resolves to)
#     (acceptance-tests/k3s-sim/build-artifacts.sh produces it).
#   - systemd only (no openrc), no SELinux RPMs, no iptables flush.
#   - K3S_SIM_ROOT, if set, prefixes every host path (loopback tests that share one filesystem). Being a K3S_*
#     variable it is copied into the env file, so the installed service uses the same root.
#   - The env file lists variables sorted by name, so its hash does not depend on the caller's environment order.
set -e

info() { echo "[INFO]  $*"; }
warn() { echo "[WARN]  $*" >&2; }
fatal() {
    echo "[ERROR]  $*" >&2
    exit 1
}

ROOT="${K3S_SIM_ROOT:-}"

# --- which supervisor, which user ---
verify_system() {
    if ! command -v systemctl >/dev/null 2>&1; then
        fatal 'Can not find systemd or openrc to use as a process supervisor for k3s'
    fi
    SUDO=sudo
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=
    fi
}

# --- command, names and paths ---
setup_env() {
    # INSTALL_K3S_EXEC is split into words (no globbing); the script's own arguments follow it unchanged.
    set -f
    # shellcheck disable=SC2086
    set -- ${INSTALL_K3S_EXEC} "$@"
    set +f
    DEFAULTED=
    case "$1" in
    -* | "")
        if [ -z "${K3S_URL}" ]; then
            CMD_K3S=server
        else
            CMD_K3S=agent
            DEFAULTED=true
        fi
        ;;
    *)
        CMD_K3S=$1
        shift
        ;;
    esac
    CMD_ARGS_COUNT=$#
    CMD_K3S_EXEC_ARGS=
    for a in "$@"; do
        q=$(printf '%s' "$a" | sed "s/'/'\\\\''/g")
        CMD_K3S_EXEC_ARGS="${CMD_K3S_EXEC_ARGS} \\
    '${q}'"
    done

    if [ -n "${K3S_URL}" ]; then
        case "${K3S_URL}" in
        https://*) ;;
        *) fatal "Only https:// URLs are supported for K3S_URL (have ${K3S_URL})" ;;
        esac
    fi
    if [ "${DEFAULTED}" = true ] && [ -z "${K3S_TOKEN}" ] && [ -z "${K3S_TOKEN_FILE}" ]; then
        fatal "Defaulted k3s exec command to 'agent' because K3S_URL is defined, but K3S_TOKEN or K3S_TOKEN_FILE is not defined."
    fi

    if [ -n "${INSTALL_K3S_NAME}" ]; then
        SYSTEM_NAME=k3s-${INSTALL_K3S_NAME}
    elif [ "${CMD_K3S}" = server ]; then
        SYSTEM_NAME=k3s
    else
        SYSTEM_NAME=k3s-${CMD_K3S}
    fi
    SYSTEM_NAME=$(printf '%s' "${SYSTEM_NAME}" | sed -e 's/[^a-zA-Z0-9@._-]/-/g')

    BIN_DIR=${INSTALL_K3S_BIN_DIR:-/usr/local/bin}
    if [ -z "${INSTALL_K3S_BIN_DIR}" ] && ! [ -w "${ROOT}/usr/local/bin" ] && [ -d "${ROOT}/opt/bin" ] &&
        [ -w "${ROOT}/opt/bin" ]; then
        BIN_DIR=/opt/bin
    fi
    BIN_DIR="${ROOT}${BIN_DIR}"
    SYSTEMD_DIR="${ROOT}${INSTALL_K3S_SYSTEMD_DIR:-/etc/systemd/system}"
    FILE_K3S_SERVICE="${SYSTEMD_DIR}/${SYSTEM_NAME}.service"
    FILE_K3S_ENV="${SYSTEMD_DIR}/${SYSTEM_NAME}.service.env"
    KILLALL_K3S_SH=${KILLALL_K3S_SH:-${BIN_DIR}/k3s-killall.sh}
    UNINSTALL_K3S_SH=${UNINSTALL_K3S_SH:-${BIN_DIR}/${SYSTEM_NAME}-uninstall.sh}

    PRE_INSTALL_HASHES=$(get_installed_hashes)
}

get_installed_hashes() {
    $SUDO sha256sum "${BIN_DIR}/k3s" "${FILE_K3S_SERVICE}" "${FILE_K3S_ENV}" 2>&1 || true
}

can_skip_download() {
    if [ "${INSTALL_K3S_BIN_DIR_READ_ONLY}" = true ]; then
        return 0
    fi
    case "${INSTALL_K3S_SKIP_DOWNLOAD}" in
    true | binary) return 0 ;;
    esac
    return 1
}

# --- "download": copy a build from the artifact directory ---
get_release_version() {
    if [ -n "${INSTALL_K3S_VERSION}" ]; then
        VERSION_K3S=${INSTALL_K3S_VERSION}
    else
        CHANNEL=${INSTALL_K3S_CHANNEL:-stable}
        info "Finding release for channel ${CHANNEL}"
        [ -f "${ARTIFACTS}/channels/${CHANNEL}" ] || fatal "Download failed: no channel ${CHANNEL} in ${ARTIFACTS}/channels"
        VERSION_K3S=$(tr -d ' \n' <"${ARTIFACTS}/channels/${CHANNEL}")
    fi
    info "Using ${VERSION_K3S} as release"
}

download_and_verify() {
    if can_skip_download; then
        info 'Skipping k3s download and verify'
        [ -x "${BIN_DIR}/k3s" ] || fatal "Executable k3s binary not found at ${BIN_DIR}/k3s"
        return
    fi
    ARTIFACTS=${INSTALL_K3S_SIM_ARTIFACTS}
    [ -n "${ARTIFACTS}" ] || fatal 'INSTALL_K3S_SIM_ARTIFACTS is not set: the lab has no network, point it at a directory of k3s builds'
    get_release_version
    SRC="${ARTIFACTS}/${VERSION_K3S}/k3s"
    info "Downloading hash file://${ARTIFACTS}/${VERSION_K3S}/sha256sum-amd64.txt"
    [ -f "${SRC}" ] || fatal "Download failed: ${SRC} does not exist"
    HASH_EXPECTED=$(sha256sum "${SRC}" | cut -d' ' -f1)
    if [ -x "${BIN_DIR}/k3s" ]; then
        HASH_INSTALLED=$($SUDO sha256sum "${BIN_DIR}/k3s" | cut -d' ' -f1)
        if [ "${HASH_INSTALLED}" = "${HASH_EXPECTED}" ]; then
            info 'Skipping binary downloaded, installed k3s matches hash'
            return
        fi
    fi
    info "Downloading binary file://${SRC}"
    $SUDO mkdir -p "${BIN_DIR}"
    TMP_BIN="${BIN_DIR}/.k3s.download.$$"
    $SUDO cp "${SRC}" "${TMP_BIN}"
    info 'Verifying binary download'
    HASH_BIN=$($SUDO sha256sum "${TMP_BIN}" | cut -d' ' -f1)
    if [ "${HASH_BIN}" != "${HASH_EXPECTED}" ]; then
        $SUDO rm -f "${TMP_BIN}"
        fatal "Download sha256 does not match ${HASH_EXPECTED}, got ${HASH_BIN}"
    fi
    info "Installing k3s to ${BIN_DIR}/k3s"
    $SUDO chmod 755 "${TMP_BIN}"
    $SUDO chown root:root "${TMP_BIN}" 2>/dev/null || true
    $SUDO mv -f "${TMP_BIN}" "${BIN_DIR}/k3s"
}

# --- kubectl / crictl / ctr ---
create_symlinks() {
    [ "${INSTALL_K3S_BIN_DIR_READ_ONLY}" = true ] && return
    [ "${INSTALL_K3S_SYMLINK}" = skip ] && return
    for cmd in kubectl crictl ctr; do
        if [ ! -e "${BIN_DIR}/${cmd}" ] || [ "${INSTALL_K3S_SYMLINK}" = force ]; then
            which_cmd=$(command -v "${cmd}" 2>/dev/null || true)
            if [ -z "${which_cmd}" ] || [ "${INSTALL_K3S_SYMLINK}" = force ]; then
                info "Creating ${BIN_DIR}/${cmd} symlink to k3s"
                $SUDO ln -sf k3s "${BIN_DIR}/${cmd}"
            else
                info "Skipping ${BIN_DIR}/${cmd} symlink to k3s, command exists in PATH at ${which_cmd}"
            fi
        else
            info "Skipping ${BIN_DIR}/${cmd} symlink to k3s, already exists"
        fi
    done
}

write_script() {
    # $1 = path; content on stdin
    $SUDO tee "$1" >/dev/null
    $SUDO chmod 755 "$1"
    $SUDO chown root:root "$1" 2>/dev/null || true
}

# --- k3s-killall.sh: stop every k3s unit and clear runtime state ---
create_killall() {
    [ "${INSTALL_K3S_BIN_DIR_READ_ONLY}" = true ] && return
    info "Creating killall script ${KILLALL_K3S_SH}"
    write_script "${KILLALL_K3S_SH}" <<EOF
#!/bin/sh
[ \$(id -u) -eq 0 ] || exec sudo \$0 \$@
set -x
for service in ${SYSTEMD_DIR}/k3s*.service; do
    [ -s "\$service" ] && systemctl stop "\$(basename "\$service")"
done
rm -rf ${ROOT}/run/k3s ${ROOT}/run/flannel
exit 0
EOF
}

# --- <name>-uninstall.sh: remove this unit; remove k3s entirely if no other k3s unit remains ---
create_uninstall() {
    [ "${INSTALL_K3S_BIN_DIR_READ_ONLY}" = true ] && return
    info "Creating uninstall script ${UNINSTALL_K3S_SH}"
    write_script "${UNINSTALL_K3S_SH}" <<EOF
#!/bin/sh
set -x
[ \$(id -u) -eq 0 ] || exec sudo \$0 \$@
K3S_DATA_DIR=\${K3S_DATA_DIR:-${ROOT}/var/lib/rancher/k3s}

${KILLALL_K3S_SH}

if command -v systemctl >/dev/null 2>&1; then
    systemctl disable ${SYSTEM_NAME}
    systemctl reset-failed ${SYSTEM_NAME}
    systemctl daemon-reload
fi
rm -f ${FILE_K3S_SERVICE}
rm -f ${FILE_K3S_ENV}

remove_uninstall() {
    rm -f ${UNINSTALL_K3S_SH}
}
trap remove_uninstall EXIT

if ls ${SYSTEMD_DIR}/k3s*.service >/dev/null 2>&1; then
    set +x
    echo 'Additional k3s services installed, skipping uninstall of k3s'
    exit
fi

for cmd in kubectl crictl ctr; do
    if [ -L ${BIN_DIR}/\$cmd ]; then
        rm -f ${BIN_DIR}/\$cmd
    fi
done

rm -rf ${ROOT}/etc/rancher/k3s
rm -rf ${ROOT}/run/k3s
rm -rf ${ROOT}/run/flannel
rm -rf \${K3S_DATA_DIR}
rm -rf ${ROOT}/var/lib/kubelet
rm -f ${BIN_DIR}/k3s
rm -f ${KILLALL_K3S_SH}
EOF
}

# --- unit and env file ---
systemd_disable() {
    $SUDO systemctl disable "${SYSTEM_NAME}" >/dev/null 2>&1 || true
    $SUDO rm -f "${FILE_K3S_SERVICE}" "${FILE_K3S_ENV}" || true
}

create_env_file() {
    info "env: Creating environment file ${FILE_K3S_ENV}"
    $SUDO mkdir -p "${SYSTEMD_DIR}"
    $SUDO touch "${FILE_K3S_ENV}"
    $SUDO chmod 0600 "${FILE_K3S_ENV}"
    env | grep -E '^(K3S|CONTAINERD)_[A-Za-z0-9_]*=' | sort |
        sed -e "s/'/'\\\\''/g" -e "s/=\\(.*\\)/='\\1'/" | $SUDO tee "${FILE_K3S_ENV}" >/dev/null
    env | grep -Ei '^(NO|HTTP|HTTPS)_PROXY=' | sort | $SUDO tee -a "${FILE_K3S_ENV}" >/dev/null || true
    $SUDO chmod 0600 "${FILE_K3S_ENV}"
}

create_service_file() {
    info "systemd: Creating service file ${FILE_K3S_SERVICE}"
    $SUDO tee "${FILE_K3S_SERVICE}" >/dev/null <<EOF
[Unit]
Description=Lightweight Kubernetes
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=${INSTALL_K3S_TYPE:-notify}
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-${FILE_K3S_ENV}
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=${BIN_DIR}/k3s \\
    '${CMD_K3S}'${CMD_K3S_EXEC_ARGS}
EOF
    $SUDO chmod 0644 "${FILE_K3S_SERVICE}"
}

service_enable_and_start() {
    [ "${INSTALL_K3S_SKIP_ENABLE}" = true ] && return
    info "systemd: Enabling ${SYSTEM_NAME} unit"
    # k3s's script passes the unit file's path; the unit name is equivalent for a unit in the systemd directory
    # and is what the lab's systemctl stand-in understands.
    $SUDO systemctl enable "${SYSTEM_NAME}" >/dev/null
    $SUDO systemctl daemon-reload >/dev/null
    [ "${INSTALL_K3S_SKIP_START}" = true ] && return
    POST_INSTALL_HASHES=$(get_installed_hashes)
    if [ "${PRE_INSTALL_HASHES}" = "${POST_INSTALL_HASHES}" ] && [ "${INSTALL_K3S_FORCE_RESTART}" != true ]; then
        info 'No change detected so skipping service start'
        return
    fi
    info "systemd: Starting ${SYSTEM_NAME}"
    $SUDO systemctl restart "${SYSTEM_NAME}"
}

{
    verify_system
    setup_env "$@"
    download_and_verify
    create_symlinks
    create_killall
    create_uninstall
    systemd_disable
    create_env_file
    create_service_file
    service_enable_and_start
}
