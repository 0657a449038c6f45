"""Files in and out: checkpoints (the only orbax user), loading, atomic writes, image encoding."""
