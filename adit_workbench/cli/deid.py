"""adit-workbench deid commands."""
