"""Query identifiers: information models and levels, ``--key`` parsing, building the data set."""
