"""The ``edgeformer`` command line: one Typer module per command group, joined in :mod:`.app`."""
