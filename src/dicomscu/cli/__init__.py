"""The command line: gdcmscu syntax parsed into one Request (parser, help, profiles, serve)."""
