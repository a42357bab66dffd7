"""A process that dies at a chosen point of a test (SIGKILL, a Lambda timeout, a closed terminal)."""


class Killed(BaseException):
    """The process ends here: nothing after it runs (no `except Exception` of ours catches it), and
    what it was doing stays as it was (a message in flight, a write half done)."""
