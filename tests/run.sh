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
# the locales the gdcmscu oracle runs in (tests/test_gdcmscu.py): a fresh Debian has only C and C.UTF-8
NEEDED_LOCALES=("en_US.UTF-8 UTF-8" "de_DE ISO-8859-1" "de_DE@euro ISO-8859-15" "tr_TR ISO-8859-9"
                "el_GR ISO-8859-7" "pl_PL ISO-8859-2" "ru_RU.ISO-8859-5 ISO-8859-5" "en_US.CP1252 CP1252"
                "ru_RU.KOI8-R KOI8-R" "zh_CN.GB18030 GB18030")
if [ "$(locale -a 2>/dev/null | grep -ciE '^(en_US.utf8|de_DE.iso88591|de_DE@euro|tr_TR.iso88599|el_GR.iso88597|pl_PL.iso88592|ru_RU.iso88595|en_US.cp1252|ru_RU.koi8r|zh_CN.gb18030)$')" -lt 10 ]; then
    [ -x /usr/sbin/locale-gen ] || { $SUDO apt-get update -q; DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q locales; }
    for entry in "${NEEDED_LOCALES[@]}"; do
        grep -qxF "$entry" /etc/locale.gen 2>/dev/null || echo "$entry" | $SUDO tee -a /etc/locale.gen >/dev/null
    done
    $SUDO locale-gen >/dev/null
fi
# a real browser for serve's study browser (tests/test_browser.py)
if [ ! -x /usr/bin/chromium ]; then
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi
# Node peers (dcmjs-dimse, a third DIMSE implementation): Debian's Node.js when there is none, then npm
if ! command -v npm >/dev/null; then
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q nodejs npm
fi
npm install --prefix tests/node --no-audit --no-fund --silent  # (quick when every package is there)
python3 -m pip install -q -e '.[test]'
python3 -m mypy src/dicomscu   # the package ships py.typed: its types are checked, not hoped for
python3 -m pytest "$@"
