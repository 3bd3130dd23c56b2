"""Grading labs: `engine` runs checks, `kinds` is the registry of assertion kinds, `parse`
reads command outputs, `bundle` records and replays them, `report` formats the results."""
