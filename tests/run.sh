#!/usr/bin/env bash
# Install the test peers (DCMTK, Orthanc, and GDCM's gdcmscu as an oracle) and dicomscu with its test extras,
# check the types, then run the tests.
# Works on a fresh Debian machine as root (or with sudo); CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ! -x /usr/bin/storescp ] || [ ! -x /usr/bin/dcmqrscp ] || [ ! -x /usr/sbin/Orthanc ] || [ ! -x /usr/bin/gdcmscu ] \
        || [ ! -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q dcmtk orthanc orthanc-dicomweb libgdcm-tools
fi
python3 -m pip install -q -e '.[test]'
python3 -m mypy src/dicomscu   # the package ships py.typed: its types are checked, not hoped for
python3 -m pytest "$@"
