"""The text of ``dicomscu --help``: gdcmscu's options first, then what dicomscu adds."""

HELP = """\
Usage: dicomscu [OPTION]... [OPERATION]... HOSTNAME [PORT] [FILE]...
Execute a DICOM operation on HOSTNAME, using port PORT (104 when not specified).
One argument is the host, two are host and port, three or more are host, port
and files to send (as gdcmscu).

Options:
  -H --hostname HOST    Hostname.
  -p --port PORT        Port number.
     --aetitle AE       Set calling AE title (default GDCMSCU).
     --call AE          Set called AE title (default ANY-SCP).
Mode options:
     --echo             C-ECHO (default when none).
     --store            C-STORE.
     --find             C-FIND.
     --move             C-MOVE.
     --get              C-GET.
C-STORE options:
  -i --input FILE       DICOM file or directory to send (repeatable).
  -r --recursive        Recursively process (sub-)directories.
C-FIND options:
     --worklist         C-FIND Modality Worklist model.
     --patientroot      C-FIND Patient Root model (default).
     --studyroot        C-FIND Study Root model.
     --patient          Query on patient level (not with --studyroot).
     --study            Query on study level.
     --series           Query on series level.
     --image            Query on image level.
  -k --key G,E[=VALUE]  Search key, e.g. 10,10="A*" or 10,10,"A*"; without a
                        value (10,20 or 10,20="") a key to return.
     --store-query FILE Store the constructed query in FILE.
     --queryhelp        Print the keys each query level supports.
C-MOVE/C-GET options:
  -o --output DIR       Directory for retrieved files.
     --port-scp PORT    Port for incoming associations (C-MOVE).
General options:
     --root-uid UID     Root UID (also from the GDCM_ROOT_UID environment variable).
     --resources-path P Accepted for gdcmscu compatibility (not needed).
  -V --verbose          Verbose: warnings, errors and progress information.
  -W --warning          Print warnings (and errors).
  -E --error            Print errors only.
  -D --debug            Debug: everything, including the association negotiation.
  -L --log-file FILE    Write the log to FILE instead of the terminal.
  -h --help             Print this help and exit.
  -v --version          Print version information and exit.
dicomscu options (not in gdcmscu):
     --timeout S        Limit for every wait, in seconds (default: connect 10,
                        association 30, DIMSE 60, stalled network read 30).
     --connect-timeout S, --acse-timeout S, --dimse-timeout S
                        Set one limit.
     --max-pdu N        Largest PDU we accept, in bytes (default 1048576; 0 = no limit).
     --format F         C-FIND output: table (default on a terminal), json (DICOM JSON
                        model), csv, dump (default when piped).
     --limit N          Stop after N matches (sends a C-CANCEL).
     --charset CS       Specific Character Set of the query (default from the locale,
                        e.g. ISO_IR 192 for UTF-8; "" for none).
     --layout L         Retrieved files: flat (DIR/<SOPInstanceUID>.dcm, default) or
                        hierarchical (DIR/<PatientID>/<Study>/<Series>/<SOP>.dcm).
     --move-dest AE     C-MOVE to another AE (no SCP of ours is started).
     --accept-all-syntaxes
                        Accept every transfer syntax for retrieved instances (default,
                        as gdcmscu: Implicit VR Little Endian only).
     --skip-existing    Find first, then retrieve only instances not already in -o DIR.
  -j --jobs N          C-STORE (files split by size), C-GET or C-MOVE (work split by
                        series) over N associations in parallel (default 1, as gdcmscu).
     --journal FILE     C-STORE: record each instance the peer confirmed in FILE
                        (SQLite); a re-run skips them (resume after Ctrl-C or a crash).
     --then get|move    After --find, retrieve exactly its matches (same options as --get/--move).
     --from-json FILE   --get/--move the answers of an earlier --find --format json
                        (FILE or - for stdin), e.g. dicomscu --find ... --format json |
                        jq 'map(select(...))' | dicomscu --get HOST PORT --from-json -
     --decompress       C-STORE: send compressed files uncompressed (decoders from
                        pip install 'dicomscu[compressed]'). Without it, a file is
                        decompressed only when the peer refuses its transfer syntax.
     --tls              Use TLS (PS3.15); any --tls-* option implies it.
     --tls-cert FILE, --tls-key FILE
                        Our certificate and private key (PEM), for servers that ask.
     --tls-ca FILE      CA certificate(s) to verify the server with (default: system CAs).
     --tls-no-verify    Do not verify the server's certificate (testing only).
     --config FILE      Server profiles (default ~/.config/dicomscu/servers.toml):
                        use @NAME as HOSTNAME (files follow it directly).
     --list-servers     Print the server profiles and exit.
     --progress, --no-progress
                        Force the progress bar on or off (default: on a terminal).

Exit status:
  0 success                     4 unknown host
  1 something failed (a file,   5 timeout (connect, association, DIMSE, read)
    a status)                   6 association rejected / no context accepted
  2 usage error                 7 association aborted / protocol error
  3 connection refused or failed

Other commands:
  dicomscu serve [--port 11112] [--storage DIR] ...   the embedded PACS (serve --help)
  dicomscu demo                                       echo/store/find/get/move against it

Examples:
  dicomscu pacs.example.org 11112 --call PACS              C-ECHO
  dicomscu --store pacs.example.org 11112 -r study/        send a directory tree
"""
