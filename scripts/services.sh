#!/usr/bin/env bash
# Start what the test suite needs when it is not already running: Redis on
# 127.0.0.1:6379, PostgreSQL on 127.0.0.1:5432 (database `test`, trust auth for
# loopback), and the system packages the tests drive (Chromium, DCMTK, Orthanc as
# the hospital PACS of tests/priors, with its DICOMweb plugin, also the peer of
# bench/served.py). Installs them with apt on a fresh Debian machine. (--bench, once
# needed for the plugin, is accepted and changes nothing.)
set -euo pipefail

APT_UPDATED=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then echo "services: need root to apt-get install $*" >&2; return 1; fi
  if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- Redis -----------------------------------------------------------------
if ! port_open 6379; then
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/teleimagerie-test.log
  for _ in $(seq 50); do port_open 6379 && break; sleep 0.1; done
fi
port_open 6379 || { echo "services: Redis did not start" >&2; exit 1; }

# --- PostgreSQL --------------------------------------------------------------
if ! port_open 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    ver=$(ls /etc/postgresql | sort -V | tail -n1)
    hba=/etc/postgresql/$ver/main/pg_hba.conf
    # The test cluster trusts loopback connections, like the machines CI runs on.
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  for _ in $(seq 100); do port_open 5432 && break; sleep 0.1; done
fi
port_open 5432 || { echo "services: PostgreSQL did not start" >&2; exit 1; }
if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
  su postgres -c "createdb test" 2>/dev/null || true
fi

# --- Tools the tests drive -------------------------------------------------
command -v storescu >/dev/null || apt_install dcmtk
[ -x /usr/bin/chromium ] || apt_install chromium
# The hospital PACS of the priors tests: tests/priors/orthanc.py starts its own
# instance from a config file in a temp dir, on free ports (the packaged service,
# if the machine starts it, is not used).
[ -x /usr/sbin/Orthanc ] || apt_install orthanc
# Its DICOMweb plugin: the DICOMweb hospital PACS of tests/priors/test_dicomweb.py
# (and the peer of bench/served.py).
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || apt_install orthanc-dicomweb
# coturn: tests/calls/test_turn.py starts its own turnserver on a free port.
command -v turnserver >/dev/null || apt_install coturn

exit 0
