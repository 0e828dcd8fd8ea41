"""Start and stop a real `batos kernel` in a subprocess, for tests and benches."""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class KernelProcess:
    def __init__(self, env, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batos", "kernel", "--http", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        line = self.proc.stdout.readline()
        m = re.search(r"zeo (\S+), http (http://\S+);", line)
        if not m:
            self.proc.kill()
            raise AssertionError(f"the kernel did not start: {line}\n{self.proc.stderr.read()}")
        self.zeo, self.url = m.group(1), m.group(2)
        self.image = Path(env["BATOS_IMAGE"])
        self.token = (self.image / "api-token").read_text().strip()

    def client(self, token=None):
        import openai
        return openai.OpenAI(base_url=self.url + "/v1", api_key=token or self.token,
                             max_retries=0, timeout=300)

    def log(self):
        return (self.image / "logs" / "kernel.jsonl").read_text()

    def terminate(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc

    def kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.proc.stdout.close()
        self.proc.stderr.close()
