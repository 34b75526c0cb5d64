"""adit-workbench db commands."""
