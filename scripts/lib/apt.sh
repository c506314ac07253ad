# shellcheck shell=bash
# Sourced by scripts/install-*.sh (not run on its own; `make tools` runs only scripts/install-*.sh).

# apt_install PACKAGE...: install Debian packages as root or through sudo, without starting their
# system services: the tests start their own servers on free ports, and a system Prometheus on :9090
# or Redis on :6379 would only get in the way. policy-rc.d exit 101 forbids service starts during the
# install; an existing policy-rc.d (containers ship one) is left exactly as it was.
apt_install() {
  local sudo="" made_policy=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq -o DPkg::Lock::Timeout=600
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  # Lock timeout: another install (a parallel `make tools`) may hold dpkg's lock for a while.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "$@"
  [ -z "$made_policy" ] || $sudo rm -f /usr/sbin/policy-rc.d
}
