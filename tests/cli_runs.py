"""Entry-point subprocesses started together: each pays the jax import and start-up once,
in parallel, instead of one after another (same commands, same results)."""

import subprocess


def run_all(commands: list[list[str]], cwd: str, timeout: float = 600, env=None
            ) -> list[subprocess.CompletedProcess]:
    """Runs every command (argv lists) concurrently; returns their completed processes in
    order, with text stdout and stderr."""
    procs = [subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in commands]
    out = []
    for c, p in zip(commands, procs):
        stdout, stderr = p.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(c, p.returncode, stdout, stderr))
    return out
