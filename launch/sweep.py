"""Expand a grid of config settings into runs, one workdir each; run them here, N at a time, or print them.

    python launch/sweep.py rpo_b2n --root runs/                 # every unfinished run, one after another
    python launch/sweep.py rpo_b2n --root runs/ --parallel 2    # two at a time
    python launch/sweep.py rpo_b2n --root runs/ --print         # the commands, for a cluster's job array
    python launch/sweep.py rpo_b2n --root runs/ --smoke         # tiny versions, in runs/rpo_b2n_smoke/
    python launch/sweep.py rpo_b2n --root runs/ --pass root=/data      # dataset root: not part of the workdir
    python launch/sweep.py my_sweep.py --root runs/ --set dataset=dtd --set method.rpo.k=4
    python launch/sweep.py --list                               # the ready-made sweeps in launch/sweeps/

A sweep is a Python file (a name means `launch/sweeps/<name>.py`) exporting

    SWEEP = dict(
        config="configs/rpo_b2n.py",                     # relative to the project root, or absolute
        grid={"dataset": ["dtd", "eurosat"], "seed": [1, 2, 3]},   # a dict, or a list of dicts (their union)
        fixed={"k": 24},                                 # the same for every run (optional)
        smoke={"smoke": True},                           # what --smoke adds (optional; this is the default)
    )

**The key rule.** A key with a dot is a config field and is passed as `--config.<key>=<value>`; a key without a dot
is an argument of the config file's `get_config(arg)` and goes into `configs/x.py:key=value,key=value`. The key
`config` itself may be a grid key (a list of config files), so one sweep can span several config files.

**Workdirs.** `ROOT/<sweep name>/<k=v,k=v,...>` over the point's grid keys in grid order (plus any `--set` key that
is not a grid key; `--pass` settings, e.g. paths, never name a workdir), values made filesystem-safe. A run is
finished when `WORKDIR/results.json` holds a complete results record (a truncated file does not count): finished
runs are skipped; an unfinished one is simply re-run with the same command, and the trainer resumes from its workdir.
Each run's stdout and stderr are appended to `WORKDIR/log.txt`. Runs execute with the project root as the current
directory; printed commands assume it too. Failures are listed at the end and make the exit status non-zero.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import importlib.util
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import time
from typing import Any, Callable, Iterable, Sequence

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEPS_DIR = os.path.join(PROJECT_ROOT, "launch", "sweeps")
RESULTS = "results.json"
RECORD_KEYS = ("schema", "kind", "run", "metrics")  # jaxprompt.report.run_files' schema (not imported: no jax here)


def results_complete(path: str) -> bool:
  """Whether `path` parses as a results record with every schema key (the same rule as workdir.is_finished)."""
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, ValueError):
    return False
  return isinstance(record, dict) and all(key in record for key in RECORD_KEYS)
LOG = "log.txt"
MAIN_MODULE = "jaxprompt.main"
DEFAULT_SMOKE = {"smoke": True}


@dataclasses.dataclass(frozen=True)
class Run:
  """One grid point: where it runs (`workdir`) and what it runs (`config` + `args` + `overrides`)."""
  name: str                 # the workdir's base name, e.g. "dataset=dtd,seed=1"
  workdir: str              # ROOT/<sweep>/<name>
  config: str               # config file path as written in the sweep
  args: dict                # get_config(arg) keys -> values
  overrides: dict           # dotted config fields -> values

  @property
  def finished(self) -> bool:
    """A complete results record in WORKDIR/results.json (a truncated or foreign file is not finished)."""
    return results_complete(os.path.join(self.workdir, RESULTS))

  def config_spec(self) -> str:
    """`configs/x.py:key=value,...` (no colon when there are no arg keys)."""
    if not self.args:
      return self.config
    return self.config + ":" + ",".join(f"{k}={format_value(v)}" for k, v in self.args.items())

  def command(self, python: str = sys.executable, main: str = MAIN_MODULE, workdir: str | None = None) -> list[str]:
    """The argv of this run: `python -m jaxprompt.main --config ... --workdir ... --config.a.b=v ...`."""
    cmd = [python, "-m", main, "--config", self.config_spec(), "--workdir", workdir or self.workdir]
    return cmd + [f"--config.{k}={format_value(v)}" for k, v in self.overrides.items()]


@dataclasses.dataclass
class Outcome:
  """What happened to a run: status is "skipped" (already finished), "ok" or "failed"."""
  run: Run
  status: str
  seconds: float = 0.0
  reason: str = ""


# ---------------------------------------------------------------------------------------------------- sweep files

def load_sweep(name_or_file: str) -> tuple[str, dict]:
  """(sweep name, SWEEP dict) from a file path or a name in launch/sweeps/; errors say what is available."""
  path = name_or_file
  if not os.path.exists(path):
    path = os.path.join(SWEEPS_DIR, name_or_file if name_or_file.endswith(".py") else name_or_file + ".py")
  if not os.path.exists(path):
    raise SystemExit(f"no sweep {name_or_file!r}: not a file, and not one of launch/sweeps/: "
                     f"{', '.join(available_sweeps()) or '(none)'}")
  if PROJECT_ROOT not in sys.path:  # sweep files may import launch.sweeps.common
    sys.path.insert(0, PROJECT_ROOT)
  spec = importlib.util.spec_from_file_location(f"_sweep_{os.path.basename(path)[:-3]}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not isinstance(getattr(module, "SWEEP", None), dict):
    raise SystemExit(f"{path} must define SWEEP = dict(config=..., grid=...)")
  sweep = dict(module.SWEEP)
  unknown = set(sweep) - {"config", "grid", "fixed", "smoke", "name", "description"}
  if unknown or "grid" not in sweep:
    raise SystemExit(f"{path}: SWEEP needs keys config and grid (optional: fixed, smoke, name, description); "
                     f"unknown keys: {sorted(unknown)}")
  if "config" not in sweep and not all("config" in g for g in (sweep.get("grid") if isinstance(
      sweep.get("grid"), (list, tuple)) else [sweep.get("grid") or {}])):
    raise SystemExit(f"{path}: SWEEP needs a config file: SWEEP['config'], or a 'config' key in every grid")
  sweep.setdefault("description", (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else "")
  return sweep.get("name") or os.path.basename(path)[:-3], sweep


def available_sweeps() -> list[str]:
  """Names of the ready-made sweeps (files in launch/sweeps/ not starting with `_` and not `common.py`)."""
  if not os.path.isdir(SWEEPS_DIR):
    return []
  return sorted(f[:-3] for f in os.listdir(SWEEPS_DIR)
                if f.endswith(".py") and not f.startswith("_") and f != "common.py")


# ------------------------------------------------------------------------------------------------------ expansion

def format_value(value: Any) -> str:
  """A value as it appears on the command line (`True`, `0.01`, `a photo of a`)."""
  return str(value)


def safe_name(value: Any) -> str:
  """A value as it appears in a workdir name: only [A-Za-z0-9._+-], "" -> "empty"."""
  text = format_value(value)
  return re.sub(r"[^A-Za-z0-9._+-]", "_", text) if text else "empty"


def name_of(key: str, value: Any) -> str:
  """A grid value in a workdir name; config files appear by their base name (`configs/coop.py` -> `coop`)."""
  if key == "config":
    return safe_name(os.path.splitext(os.path.basename(str(value)))[0])
  return safe_name(value)


def split_keys(settings: dict) -> tuple[dict, dict]:
  """The key rule: (config-arg keys without a dot, dotted config-field overrides)."""
  args = {k: v for k, v in settings.items() if "." not in k}
  overrides = {k: v for k, v in settings.items() if "." in k}
  for key, value in args.items():
    if any(c in format_value(value) for c in ",="):
      raise SystemExit(f"config argument {key}={value!r} may not contain ',' or '=' (they separate arg keys); "
                       f"make it a dotted config field instead")
  return args, overrides


def expand(sweep: dict, root: str, name: str, *, sets: dict | None = None, passed: dict | None = None,
           smoke: bool = False) -> list[Run]:
  """All runs of a sweep, in grid order (the last grid key varies fastest).

  `sets` ({key: value} from --set) narrows a grid axis to one value when the key is a grid key, otherwise adds a
  fixed setting that also becomes part of the workdir name. `smoke` adds the sweep's smoke settings and puts the
  runs in ROOT/<name>_smoke/.
  """
  sets = dict(sets or {})
  grids = sweep["grid"] if isinstance(sweep["grid"], (list, tuple)) else [sweep["grid"]]
  fixed = dict(sweep.get("fixed") or {})
  if smoke:
    fixed.update(sweep.get("smoke", DEFAULT_SMOKE))
  fixed.update(passed or {})
  sweep_dir = os.path.join(root, name + ("_smoke" if smoke else ""))
  runs, seen = [], {}
  for grid in grids:
    axes = {k: (list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in grid.items()}
    extra = {}
    for key, value in sets.items():
      if key in axes:
        axes[key] = [value]
      else:
        extra[key] = value
    for values in itertools.product(*axes.values()):
      point = dict(zip(axes, values))
      dirname = ",".join(f"{k}={name_of(k, v)}" for k, v in {**point, **extra}.items()) or "run"
      settings = {**fixed, **point, **extra}
      config = settings.pop("config", sweep.get("config"))
      if not config:
        raise SystemExit(f"sweep {name}: no config file for point {point} (set SWEEP['config'] or a 'config' key)")
      if dirname in seen:
        if seen[dirname] != settings:
          raise SystemExit(f"two grid points map to the same workdir {dirname!r}: {seen[dirname]} and {settings}")
        continue
      seen[dirname] = settings
      args, overrides = split_keys(settings)
      runs.append(Run(dirname, os.path.join(sweep_dir, dirname), config, args, overrides))
  return runs


def parse_sets(items: Iterable[str], flag: str = "--set") -> dict:
  """`["dataset=dtd", "method.rpo.k=4"]` -> {"dataset": "dtd", "method.rpo.k": "4"}."""
  sets = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise SystemExit(f"{flag} expects key=value, got {item!r}")
    sets[key] = value
  return sets


# -------------------------------------------------------------------------------------------------------- running

def run_one(run: Run, *, python: str, main: str, env: dict | None = None) -> Outcome:
  """Runs one point with its output appended to WORKDIR/log.txt; ok only if it exits 0 AND wrote results.json."""
  os.makedirs(run.workdir, exist_ok=True)
  workdir = os.path.abspath(run.workdir)
  cmd = run.command(python=python, main=main, workdir=workdir)
  start = time.time()
  with open(os.path.join(workdir, LOG), "a") as log:
    log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} (cwd {PROJECT_ROOT})\n# {shlex.join(cmd)}\n")
    log.flush()
    try:
      code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, env=env).returncode
    except OSError as error:  # e.g. the python executable does not exist
      return Outcome(run, "failed", time.time() - start, f"could not start: {error}")
  seconds = time.time() - start
  if code != 0:
    return Outcome(run, "failed", seconds, f"exit status {code}")
  if not run.finished:
    return Outcome(run, "failed", seconds, f"exited 0 but wrote no {RESULTS}")
  return Outcome(run, "ok", seconds)


def run_all(runs: Sequence[Run], *, parallel: int = 1, python: str = sys.executable, main: str = MAIN_MODULE,
            env: dict | None = None, out: Callable[[str], None] = print) -> list[Outcome]:
  """Skips finished runs and runs the others, `parallel` at a time; returns one Outcome per run, in order."""
  outcomes: dict[int, Outcome] = {}
  todo = []
  for i, run in enumerate(runs):
    if run.finished:
      outcomes[i] = Outcome(run, "skipped")
    else:
      todo.append(i)
  out(f"{len(runs)} runs: {len(runs) - len(todo)} finished (skipped), {len(todo)} to run, {parallel} at a time")
  with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
    futures = {pool.submit(run_one, runs[i], python=python, main=main, env=env): i for i in todo}
    for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
      outcome = outcomes[futures[future]] = future.result()
      status = "ok" if outcome.status == "ok" else f"FAILED ({outcome.reason})"
      out(f"[{done}/{len(todo)}] {status} {outcome.seconds:.1f}s {outcome.run.workdir}")
  return [outcomes[i] for i in range(len(runs))]


def summarize(outcomes: Sequence[Outcome], out: Callable[[str], None] = print) -> int:
  """Prints the tally and every failure with its workdir and log; returns the exit status (1 if any failed)."""
  count = lambda status: sum(o.status == status for o in outcomes)
  out(f"done: {count('ok')} ok, {count('skipped')} skipped (already finished), {count('failed')} failed")
  failed = [o for o in outcomes if o.status == "failed"]
  for o in failed:
    out(f"  FAILED {o.run.workdir}: {o.reason}; log: {os.path.join(o.run.workdir, LOG)}")
  return 1 if failed else 0


# ------------------------------------------------------------------------------------------------------------ CLI

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  parser.add_argument("sweep", nargs="?", help="a sweep file, or a name from launch/sweeps/")
  parser.add_argument("--root", default="runs", help="workdirs go to ROOT/<sweep name>/<point> (default: runs)")
  parser.add_argument("--parallel", type=int, default=1, help="runs at a time (default 1)")
  parser.add_argument("--print", dest="print_only", action="store_true",
                      help="print the commands of the unfinished runs instead of running them")
  parser.add_argument("--smoke", action="store_true", help="add the sweep's smoke settings; runs in <sweep>_smoke/")
  parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                      help="narrow a grid axis to one value, or add a setting (same dot rule as the grid)")
  parser.add_argument("--pass", dest="passed", action="append", default=[], metavar="KEY=VALUE",
                      help="add a setting that does not name the workdir (paths: root=/data)")
  parser.add_argument("--python", default=None, help="python executable (default: this one; 'python' with --print)")
  parser.add_argument("--main", default=MAIN_MODULE, help=f"module run with -m (default {MAIN_MODULE})")
  parser.add_argument("--report", action="store_true", help="aggregate ROOT/<sweep> with jaxprompt.report afterwards")
  parser.add_argument("--list", action="store_true", help="list the ready-made sweeps and exit")
  args = parser.parse_args(argv)
  if not args.list and not args.sweep:
    parser.error("give a sweep (file or name), or --list")
  return args


def list_sweeps(root: str, out: Callable[[str], None] = print) -> None:
  for name in available_sweeps():
    _, sweep = load_sweep(name)
    configs = sorted({run.config for run in expand(sweep, root, name)})
    out(f"{name:16s} {len(expand(sweep, root, name)):4d} runs  {' '.join(configs)}\n{'':22s}{sweep['description']}")


def check_config(config: str) -> None:
  path = config if os.path.isabs(config) else os.path.join(PROJECT_ROOT, config)
  if not os.path.exists(path):
    raise SystemExit(f"the sweep's config file {config} does not exist (looked for {path})")


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
  """The CLI; returns the exit status (see the module docstring)."""
  args = parse_args(argv)
  if args.list:
    list_sweeps(args.root, out)
    return 0
  name, sweep = load_sweep(args.sweep)
  runs = expand(sweep, args.root, name, sets=parse_sets(args.sets), passed=parse_sets(args.passed, "--pass"),
                smoke=args.smoke)
  if args.print_only:
    python = args.python or "python"
    todo = [run for run in runs if not run.finished]
    print(f"# {name}: {len(runs)} runs, {len(runs) - len(todo)} finished; run from {PROJECT_ROOT}", file=sys.stderr)
    for run in todo:
      out(shlex.join(run.command(python=python, main=args.main)))
    return 0
  for config in sorted({run.config for run in runs}):
    check_config(config)
  outcomes = run_all(runs, parallel=args.parallel, python=args.python or sys.executable, main=args.main, out=out)
  status = summarize(outcomes, out)
  if args.report:
    # Imported here: the launcher itself needs neither jax nor matplotlib (--print on a login node).
    from jaxprompt.report import build  # pylint: disable=import-outside-toplevel
    sweep_dir = os.path.dirname(runs[0].workdir) if runs else args.root
    build.main([sweep_dir])
  return status


if __name__ == "__main__":
  sys.exit(main())
