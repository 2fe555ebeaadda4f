"""Run jaxprompt on a Cloud TPU VM or pod slice: create, install on every worker, run on all workers, fetch, delete.

    python launch/tpu_vm.py --name jp --zone us-central2-b --accelerator v4-32 --dry-run all delete \\
        -- --config configs/rpo_b2n.py:dataset=dtd,seed=1 --workdir runs/rpo_b2n/dtd_1

Steps (given in any order, executed in this one):
  create   gcloud compute tpus tpu-vm create NAME --zone --accelerator-type --version [--spot]
  install  ship the code to every worker (git clone of --repo, or a tarball of this tree via scp --worker=all; no
           virtualenvs, .git, runs or caches), then a Python >= 3.11 venv (uv) with
           `pip install -e . 'jax[tpu]' gcsfs` on every worker
  run      `JAXPROMPT_MULTIHOST=1 python -m jaxprompt.main ARGS` on all workers at once (ssh --worker=all, so
           jax.distributed.initialize() joins them); output is streamed here and tee'd to ~/jaxprompt-run.log
  logs     follow worker 0's run log
  fetch    copy the run's --workdir back from worker 0 (scp --recurse) into the same relative path here
  delete   gcloud compute tpus tpu-vm delete NAME --quiet
  all      = create install run fetch   (delete only when asked for: add `delete`)

Everything after `--` is passed to jaxprompt.main. Every cloud command is printed (prefixed with `+`) before it runs;
with --dry-run the commands are only printed and nothing is executed. A workdir on gs:// (`--workdir gs://bucket/run`,
all workdir files go through etils.epath) needs no fetch and outlives `delete`; a local one is lost with the VM
unless fetched.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from typing import Callable, Sequence

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ("create", "install", "run", "logs", "fetch", "delete")
ALL = ("create", "install", "run", "fetch")
REMOTE_DIR = "jaxprompt"              # project directory in the home of every worker
REMOTE_VENV = "jaxprompt-venv"        # its virtualenv, also in the home
RUN_LOG = "jaxprompt-run.log"
TARBALL = "jaxprompt-src.tar.gz"


NOT_SHIPPED = (".git", "runs", "__pycache__", "*.egg-info", ".pytest_cache", ".mypy_cache", ".ruff_cache", "*.pyc")
"""Never in the source tarball (besides `local_only`): the workers build their own venv and write their own runs."""


def local_only(root: str) -> list[str]:
  """Top-level directories of `root` that hold a Python environment (a `pyvenv.cfg`: .venv, venv, env, ...) or a
  local gs:// mistake (`gs:`): machine-specific or huge (a venv is ~1.3 GB), so never shipped."""
  names = sorted(os.listdir(root)) if os.path.isdir(root) else []
  return [name for name in names if name == "gs:" or os.path.exists(os.path.join(root, name, "pyvenv.cfg"))
          or name in (".venv", "venv")]


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
  """(options, jaxprompt.main arguments after `--`)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  main_args = argv[argv.index("--") + 1:] if "--" in argv else []
  argv = argv[:argv.index("--")] if "--" in argv else argv
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("steps", nargs="+", choices=STEPS + ("all",), help="what to do (see below)")
  parser.add_argument("--name", required=True, help="TPU VM name")
  parser.add_argument("--zone", required=True, help="e.g. us-central2-b")
  parser.add_argument("--project", default=None, help="GCP project (default: gcloud's configured one)")
  parser.add_argument("--accelerator", default="v4-8", help="accelerator type / slice, e.g. v4-8, v4-32, v5litepod-16")
  parser.add_argument("--version", default="tpu-ubuntu2204-base", help="TPU software (runtime) version")
  parser.add_argument("--spot", action="store_true", help="create a Spot VM")
  parser.add_argument("--repo", default=None,
                      help="git URL to clone on the workers (default: scp a tarball of this tree)")
  parser.add_argument("--branch", default="main", help="branch of --repo")
  parser.add_argument("--tarball", default=os.path.join("/tmp", TARBALL), help="local path of the source tarball")
  parser.add_argument("--python-version", default="3.12", help="Python of the workers' venv (default 3.12)")
  parser.add_argument("--dry-run", action="store_true", help="print the commands without running anything")
  args = parser.parse_args(argv)
  steps = set(args.steps)
  if "all" in steps:
    steps |= set(ALL)
  args.steps = [s for s in STEPS if s in steps]
  if {"run", "fetch"} & set(args.steps) and not main_args:
    parser.error("run/fetch need the jaxprompt.main arguments after `--` (at least --config and --workdir)")
  return args, main_args


def workdir_of(main_args: Sequence[str]) -> str | None:
  """The value of --workdir in the jaxprompt.main arguments (either `--workdir D` or `--workdir=D`)."""
  for i, arg in enumerate(main_args):
    if arg == "--workdir" and i + 1 < len(main_args):
      return main_args[i + 1]
    if arg.startswith("--workdir="):
      return arg.split("=", 1)[1]
  return None


def gcloud(args: argparse.Namespace, verb: str, *rest: str) -> list[str]:
  """`gcloud compute tpus tpu-vm VERB ... --zone=Z [--project=P]`."""
  cmd = ["gcloud", "compute", "tpus", "tpu-vm", verb, *rest, f"--zone={args.zone}"]
  return cmd + ([f"--project={args.project}"] if args.project else [])


def ssh_all(args: argparse.Namespace, command: str, worker: str = "all") -> list[str]:
  """The same shell command on every worker (or one) of the slice."""
  return gcloud(args, "ssh", args.name, f"--worker={worker}", f"--command={command}")


def commands(args: argparse.Namespace, main_args: Sequence[str]) -> list[list[str]]:
  """Every command of the requested steps, in order (local ones included: the tarball)."""
  cmds = []
  venv_python = f"~/{REMOTE_VENV}/bin/python"
  for step in args.steps:
    if step == "create":
      cmds.append(gcloud(args, "create", args.name, f"--accelerator-type={args.accelerator}",
                         f"--version={args.version}", *(["--spot"] if args.spot else [])))
    elif step == "install":
      if args.repo:
        cmds.append(ssh_all(args, f"(git clone --branch {shlex.quote(args.branch)} {shlex.quote(args.repo)} "
                                  f"~/{REMOTE_DIR} || git -C ~/{REMOTE_DIR} pull --ff-only)"))
      else:
        cmds.append(["tar", "czf", args.tarball, *[f"--exclude=./{name}" for name in local_only(PROJECT_ROOT)],
                     *[f"--exclude={pattern}" for pattern in NOT_SHIPPED], "-C", PROJECT_ROOT, "."])
        cmds.append(gcloud(args, "scp", args.tarball, f"{args.name}:{TARBALL}", "--worker=all"))
        cmds.append(ssh_all(args, f"mkdir -p ~/{REMOTE_DIR} && tar xzf ~/{TARBALL} -C ~/{REMOTE_DIR}"))
      cmds.append(ssh_all(args, " && ".join([
          "export PATH=$HOME/.local/bin:$PATH",
          "(command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh)",
          f"uv venv --allow-existing --python {args.python_version} ~/{REMOTE_VENV}",
          f"cd ~/{REMOTE_DIR}",
          f"uv pip install --python {venv_python} -e . 'jax[tpu]' gcsfs"])))  # gcsfs: gs:// workdirs
    elif step == "run":
      run = shlex.join(["-m", "jaxprompt.main", *main_args])
      cmds.append(ssh_all(args, f"set -o pipefail; cd ~/{REMOTE_DIR} && JAXPROMPT_MULTIHOST=1 {venv_python} {run} "
                                f"2>&1 | tee -a ~/{RUN_LOG}"))
    elif step == "logs":
      cmds.append(ssh_all(args, f"tail -n 200 -f ~/{RUN_LOG}", worker="0"))
    elif step == "fetch":
      workdir = workdir_of(main_args)
      if workdir is None:
        raise SystemExit("fetch needs --workdir among the jaxprompt.main arguments")
      if workdir.startswith("gs://"):
        continue  # already in the bucket
      local_parent = os.path.dirname(os.path.normpath(workdir)) or "."
      cmds.append(["mkdir", "-p", local_parent])
      remote = workdir if os.path.isabs(workdir) else f"{REMOTE_DIR}/{workdir}"  # relative to the home
      cmds.append(gcloud(args, "scp", f"{args.name}:{remote}", local_parent, "--recurse", "--worker=0"))
    elif step == "delete":
      cmds.append(gcloud(args, "delete", args.name, "--quiet"))
  return cmds


def execute(cmds: Sequence[Sequence[str]], *, dry_run: bool, out: Callable[[str], None] = print) -> int:
  """Prints each command, then (unless dry_run) runs it, streaming its output; stops at the first failure."""
  if not dry_run and shutil.which("gcloud") is None:
    out("gcloud is not on PATH: install the Google Cloud CLI (https://cloud.google.com/sdk) or use --dry-run")
    return 2
  for cmd in cmds:
    out("+ " + shlex.join(cmd))
    if dry_run:
      continue
    code = subprocess.run(list(cmd)).returncode
    if code != 0:
      out(f"command failed with exit status {code}; later steps not run (the TPU VM is kept: add `delete`)")
      return code
  return 0


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
  args, main_args = parse_args(argv)
  if args.dry_run:
    out("# dry run: printing the commands only")
  return execute(commands(args, main_args), dry_run=args.dry_run, out=out)


if __name__ == "__main__":
  sys.exit(main())
