"""adit-workbench sandbox commands."""
