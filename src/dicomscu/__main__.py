"""``python -m dicomscu`` is the same as the ``dicomscu`` command."""

from dicomscu.launch import main

main()
