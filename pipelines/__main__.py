"""Allow `python -m pipelines` as an alias of the `loyal` command."""

from pipelines.cli import main

main()
