"""The benchmark harness (see bench/README.md). Not part of the installed app."""
