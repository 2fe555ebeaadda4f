"""`python -m jaxprompt.bench [--quick] [--methods ...]` (see `jaxprompt.bench.benchmark`)."""

from jaxprompt.bench.benchmark import main

if __name__ == "__main__":
  main()
