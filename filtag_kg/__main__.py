"""`python -m filtag_kg` is the `filtag-kg` command."""

from .cli import main

main()
