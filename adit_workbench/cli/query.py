"""adit-workbench query commands."""
