"""A shell kept running in a container that runs the command lines written to its stdin.

`docker exec` starts each process through the container runtime: 30-60 ms and about as much
CPU (measured on the lab). A session's long-lived containers (each network's idle client,
each node's CPU sampler) run this loop instead; bench attaches to the container's stdin and
output once, through the node's own engine (unix, ssh or tcp alike), and a command costs a
fork of the shell, about a millisecond. The loop prints an end mark with the command's exit
status on stdout, and one on stderr, so that bench knows where each command's output ends.
`read`, `eval` and `printf` are shell builtins.
"""
from __future__ import annotations

import contextlib
import dataclasses
import shlex
import struct
import threading
from typing import Any

import docker
import docker.errors

from bench import engines

END_MARK = "overlay-bench: done"
# The command's stdin is /dev/null: the loop's own stdin carries the next commands.
LOOP = ('while read -r line; do eval "$line" </dev/null; rc=$?; '
        f'printf "\\n{END_MARK} %d\\n" $rc; printf "\\n{END_MARK}\\n" >&2; done')
ARGV = ["sh", "-c", LOOP]
_STDOUT, _STDERR = 1, 2


class ShellError(Exception):
    """The shell did not answer: its container or its engine is gone, or it timed out."""

    def __init__(self, message: str, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


@dataclasses.dataclass(frozen=True)
class Output:
    out: str
    err: str
    exit_code: int


class Shell:
    """One container's shell loop, attached."""

    def __init__(self, container, sock, node: str):
        self.container = container
        self.node = node
        self._sock = sock  # keeps the HTTP response (and a TLS connection) alive
        self._raw = getattr(sock, "_sock", sock)  # the socket itself (a paramiko channel over ssh)
        self._buffer = b""
        self._lock = threading.Lock()
        self._broken: ShellError | None = None  # after a timeout the stream is mid-command

    @classmethod
    def start(cls, client: docker.DockerClient, node: str, start_container, **kwargs: Any) -> Shell:
        """Start the container (`start_container(command, stdin_open=True, **kwargs)` returns
        it) and attach to it. EngineError when its engine refuses or does not answer."""
        ctr = start_container(ARGV, stdin_open=True, **kwargs)
        try:
            with engines.answering(node):
                sock = client.api.attach_socket(ctr.id, params={"stdin": 1, "stdout": 1, "stderr": 1,
                                                                "stream": 1})
        except BaseException:
            with contextlib.suppress(Exception):
                ctr.remove(force=True)
            raise
        return cls(ctr, sock, node)

    @property
    def id(self) -> str:
        return self.container.id

    def run(self, argv: list[str], timeout_s: float) -> Output:
        """Run `argv` in the container; its stdout, stderr and exit status. ShellError when the
        shell does not answer within `timeout_s` (the command may still run: remove the
        container to end it) or its stream ends."""
        with self._lock:
            if self._broken is not None:
                raise self._broken
            try:
                self._raw.settimeout(timeout_s)
                self._raw.sendall((" ".join(shlex.quote(a) for a in argv) + "\n").encode())
                streams = {_STDOUT: b"", _STDERR: b""}
                mark = f"\n{END_MARK}".encode()
                while mark not in streams[_STDOUT] or mark not in streams[_STDERR]:
                    stream, payload = self._frame()
                    if stream in streams:
                        streams[stream] += payload
            except TimeoutError:
                self._broken = ShellError(f"no answer within {timeout_s:g} s", timed_out=True)
                raise self._broken from None
            except (OSError, EOFError) as exc:
                self._broken = ShellError(f"its container on {self.node} stopped answering "
                                          f"({exc or type(exc).__name__})")
                raise self._broken from None
        out, _, status = streams[_STDOUT].rpartition(mark)
        err = streams[_STDERR].rpartition(mark)[0]
        return Output(out.decode(errors="replace"), err.decode(errors="replace"), int(status.split()[0]))

    def _frame(self) -> tuple[int, bytes]:
        """The next frame of the engine's multiplexed stream: 8-byte header (stream, size)."""
        while len(self._buffer) < 8 or len(self._buffer) < 8 + struct.unpack(">BxxxL", self._buffer[:8])[1]:
            chunk = self._raw.recv(65536)
            if not chunk:
                raise EOFError("end of stream")
            self._buffer += chunk
        stream, size = struct.unpack(">BxxxL", self._buffer[:8])
        payload, self._buffer = self._buffer[8:8 + size], self._buffer[8 + size:]
        return stream, payload

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._raw.close()
