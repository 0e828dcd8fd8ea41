"""The kernel side: CLI, console, (later) the PSM, kernel process and engines."""
