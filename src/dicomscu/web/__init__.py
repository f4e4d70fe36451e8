"""DICOMweb (PS3.18): the same operations over HTTP, for a peer given as a URL.

* :mod:`.service` -- the HTTP connection (urllib3: pooled keep-alive connections,
  bounded retries on 429/503 with Retry-After, redirects, TLS verified by default),
  authentication, and HTTP failures turned into dicomscu's errors and exit codes;
* :mod:`.qido` -- find (QIDO-RS), answers as the DIMSE find gives them;
* :mod:`.wado` -- get (WADO-RS), multipart responses parsed as a stream into files;
* :mod:`.stow` -- store (STOW-RS), files streamed from disk in multipart batches.

Why urllib3 rather than httpx or requests: it is the connection layer both of
those build on, it streams request bodies (chunked) and responses without loading
them, its retry policy honours Retry-After, and it has no other dependency.
"""


def is_url(text: str) -> bool:
    """Is this peer a DICOMweb service (an http or https URL) rather than a host name?"""
    return text.lower().startswith(("http://", "https://"))
