"""Shared fixtures for the provider conformance suites.

Each suite starts its fake's binary (built by cargo; `FAKES_BIN_DIR`, default `target/debug`) on a
port the OS picks on 127.0.0.1, reads the address it prints, and stops it when the module ends.
The fakes start as new, stock accounts of their providers unless a test seeds them.
"""

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN_DIR = pathlib.Path(os.environ.get("FAKES_BIN_DIR", ROOT / "target" / "debug"))


class RunningFake:
    """A fake's process and what it printed on start (its base URL, or `key=value` lines)."""

    def __init__(self, name, args, env=None):
        binary = BIN_DIR / name
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing: run `cargo build -p syncbridge-fakes --bins` first")
        self.proc = subprocess.Popen(
            [str(binary), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines = []
        self.values = {}
        expected = 2 if name in ("fake-google", "fake-drive", "fake-notion") else 1
        while len(self.lines) < expected:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{name} exited before printing its address")
            line = line.strip()
            self.lines.append(line)
            if "=" in line and not line.startswith("http"):
                key, value = line.split("=", 1)
                self.values[key] = value
        self.base_url = self.lines[0].split("=", 1)[1] if self.values else self.lines[0]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def start_fake():
    """`start_fake("fake-hubspot", "--contacts", "0")` -> RunningFake; stopped when the module ends."""
    started = []

    def start(name, *args, env=None):
        fake = RunningFake(name, list(args), env)
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()
