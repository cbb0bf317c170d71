"""bench/shell.py: the shell loop, run here with sh, and its stream read over a real socket pair
framed as the engine frames it."""
from __future__ import annotations

import socket
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from bench import cpu, shell

MARK = shell.END_MARK


def frame(payload: bytes, stream: int = 1) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def run_loop(*lines: str) -> tuple[str, str]:
    done = subprocess.run(shell.ARGV, input="".join(line + "\n" for line in lines), capture_output=True,
                          text=True, timeout=10)
    return done.stdout, done.stderr


def test_the_loop_runs_each_line_and_marks_its_end_and_status():
    out, err = run_loop("echo one", "sh -c 'echo two >&2; exit 3'", "cat")
    # Each command's output, then the mark with its exit status; stderr gets a mark too.
    assert out == f"one\n\n{MARK} 0\n\n{MARK} 3\n\n{MARK} 0\n"
    assert err == f"\n{MARK}\ntwo\n\n{MARK}\n\n{MARK}\n"
    # `cat` read /dev/null, not the loop's stdin: nothing of the next commands was eaten.


def test_a_sample_command_run_by_the_loop_on_this_machine():
    out, _ = run_loop(" ".join(a.replace(cpu.HOST_PROC, "/proc") for a in cpu.SAMPLE_ARGV))
    text = out.rpartition(f"\n{MARK}")[0]
    boot_id, counters = cpu.parse_sample(text)
    assert boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert counters.cpus >= 1


@pytest.fixture
def engine():
    """Our end of the attached stream, and the engine's end (a real socket pair)."""
    ours, theirs = socket.socketpair()
    yield shell.Shell(container=None, sock=ours, node="n1"), theirs
    ours.close()
    theirs.close()


def test_a_command_and_its_output_across_frames(engine):
    sh, theirs = engine
    reply = (frame(b"hello ") + frame(b"warn", 2) + frame(b"world\n\n" + MARK.encode()[:5])
             + frame(MARK.encode()[5:] + b" 7\n") + frame(f"\n{MARK}\n".encode(), 2))

    def engine_side():
        assert theirs.recv(100) == b"iperf3 -c 10.0.0.1 'it'\"'\"'s'\n"  # quoted for the shell
        theirs.sendall(reply[:3])  # a header cut in two
        theirs.sendall(reply[3:])

    thread = threading.Thread(target=engine_side)
    thread.start()
    result = sh.run(["iperf3", "-c", "10.0.0.1", "it's"], timeout_s=5)
    thread.join()
    assert result == shell.Output("hello world\n", "warn", 7)


def test_no_answer_in_time_breaks_the_shell(engine):
    sh, _ = engine
    with pytest.raises(shell.ShellError, match="no answer within 0.2 s") as exc:
        sh.run(["sleep", "9"], timeout_s=0.2)
    assert exc.value.timed_out
    # Its stream is mid-command: it is not used again.
    with pytest.raises(shell.ShellError, match="no answer"):
        sh.run(["true"], timeout_s=5)


def test_a_stream_that_ends_says_so(engine):
    sh, theirs = engine
    theirs.close()
    with pytest.raises(shell.ShellError, match="its container on n1 stopped answering") as exc:
        sh.run(["true"], timeout_s=5)
    assert not exc.value.timed_out
