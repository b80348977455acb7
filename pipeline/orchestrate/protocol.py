"""The wire protocol between a stage process and the warm server, in its own module so that
the client side (:mod:`.warm`) and the server (:mod:`.forkserver`) both import it and not
each other: a length-prefixed JSON request (with the caller's stdin, stdout and stderr as
passed descriptors), one byte per relayed signal, and the exit status."""

from __future__ import annotations

import signal
import struct

HEADER = struct.Struct("!I")
SIGNAL_CODES = {b"I": signal.SIGINT, b"T": signal.SIGTERM}
