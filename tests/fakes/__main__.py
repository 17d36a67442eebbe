"""`python -m fakes`: the fake upstreams as one process with a control port (fakes/remote.py)."""

from .remote import main

main()
