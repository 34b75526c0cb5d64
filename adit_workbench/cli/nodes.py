"""adit-workbench nodes commands."""
